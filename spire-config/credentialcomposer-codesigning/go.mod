module tcdist.test/spire-config/credentialcomposer-codesigning

go 1.25.0

// The SDK revision SPIRE v1.13.3 itself is built with (its go.mod).
require github.com/spiffe/spire-plugin-sdk v1.4.4-0.20250606112051-68609d83ce7c

require (
	github.com/hashicorp/go-hclog v1.6.3
	github.com/hashicorp/hcl v1.0.0
	github.com/spiffe/go-spiffe/v2 v2.6.0
	google.golang.org/grpc v1.76.0
	google.golang.org/protobuf v1.36.10
)

require (
	github.com/fatih/color v1.13.0 // indirect
	github.com/golang/protobuf v1.5.4 // indirect
	github.com/hashicorp/go-plugin v1.7.0 // indirect
	github.com/hashicorp/yamux v0.1.2 // indirect
	github.com/mattn/go-colorable v0.1.12 // indirect
	github.com/mattn/go-isatty v0.0.17 // indirect
	github.com/oklog/run v1.1.0 // indirect
	golang.org/x/net v0.46.0 // indirect
	golang.org/x/sys v0.37.0 // indirect
	golang.org/x/text v0.30.0 // indirect
	google.golang.org/genproto v0.0.0-20230223222841-637eb2293923 // indirect
)
