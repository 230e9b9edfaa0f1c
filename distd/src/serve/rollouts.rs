//! The API's rollout routes: start, advance, halt, abort and finish a channel's rollout.

use axum::Router;

use super::api::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
}
