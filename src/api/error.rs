//! One mapping from failures to HTTP answers: `{"error":{"code","message"}}` with the status that
//! fits. 5xx bodies stay generic; the detail goes to the log.

use std::convert::Infallible;

use serde_json::json;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::auth::AuthError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(String),
}

impl warp::reject::Reject for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Db(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The HTTP answer; internal details are logged, never sent.
    pub fn to_response(&self) -> warp::reply::Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed");
        }
        let body = json!({"error": {"code": code, "message": self.to_string()}});
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    }
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        self.to_response()
    }
}

/// The message of a 404 for a path no route serves (as opposed to a missing resource).
pub const NO_ROUTE: &str = "no route for this method and path; see /api/openapi.json";

pub async fn handle_rejection(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let e = if let Some(e) = r.find::<ApiError>() {
        return Ok(e.to_response());
    } else if r.is_not_found() {
        return Ok(warp::reply::with_status(
            warp::reply::json(&json!({"error": {"code": "not_found", "message": NO_ROUTE}})),
            StatusCode::NOT_FOUND,
        )
        .into_response());
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::BadRequest(format!("invalid JSON body: {e}"))
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        ApiError::BadRequest(format!("invalid query: {e}"))
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(warp::reply::with_status(
            warp::reply::json(&json!({"error": {"code": "payload_too_large", "message": "request body too large"}})),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .into_response());
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(warp::reply::with_status(
            warp::reply::json(
                &json!({"error": {"code": "method_not_allowed", "message": "method not allowed"}}),
            ),
            StatusCode::METHOD_NOT_ALLOWED,
        )
        .into_response());
    } else if let Some(e) = r.find::<warp::reject::MissingHeader>() {
        ApiError::BadRequest(e.to_string())
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::BadRequest("unsupported content type; send application/json".into())
    } else {
        ApiError::BadRequest(format!("{r:?}"))
    };
    Ok(e.into_response())
}
