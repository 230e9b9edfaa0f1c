//! Mirror configurations: a containerd `hosts.toml` as an operator (or whoever can write the
//! file a job names with `--mirrors`) writes it, through the loader's syntax, key and URL checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_oci::mirrors::MirrorConfig;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("hosts.toml");
    std::fs::write(&file, data).expect("the hosts file is written");
    match MirrorConfig::load(&file) {
        Ok(config) => {
            // Whatever loaded names an origin whose hosts are well-formed.
            for host in config.for_origin("registry.example.com:5000") {
                assert!(!host.host.is_empty() && !host.host.contains('/'), "{host:?}");
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
