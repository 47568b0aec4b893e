//! Bearer tokens on every API route: `Authorization: Bearer <token>`, compared in constant
//! time ([`crate::settings::Tokens::accepts`]); a missing or wrong token is 401. Tokens are never
//! logged (the request's headers are not logged at all).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::App;

/// The token of an `Authorization` value, if it uses the Bearer scheme (case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The middleware: passes requests carrying an accepted token, answers 401 otherwise.
pub(crate) async fn require_token(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(bearer)
        .is_some_and(|t| app.config.tokens.accepts(t));
    if !ok {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            axum::Json(crate::api::ErrorBody {
                error: "a valid bearer token is required (Authorization: Bearer <token>)".into(),
            }),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_scheme_carries_a_token() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("abc", None),
        ];
        for (value, token) in cases {
            assert_eq!(bearer(&HeaderValue::from_static(value)), token, "{value}");
        }
    }
}
