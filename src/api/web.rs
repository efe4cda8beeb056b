//! The dashboard and the widget: static files from `web/`, embedded at compile time so the one
//! binary serves everything (no build step, nothing to deploy beside it).

use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

/// `(name, content type, bytes)` of every file under `web/assets`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../web/assets/app.js")),
    ("api.js", JS, include_str!("../../web/assets/api.js")),
    ("live.js", JS, include_str!("../../web/assets/live.js")),
    ("board.js", JS, include_str!("../../web/assets/board.js")),
    ("person.js", JS, include_str!("../../web/assets/person.js")),
    ("admin.js", JS, include_str!("../../web/assets/admin.js")),
    ("widget.js", JS, include_str!("../../web/assets/widget.js")),
    ("embed.js", JS, include_str!("../../web/assets/embed.js")),
    ("style.css", CSS, include_str!("../../web/assets/style.css")),
    (
        "widget.css",
        CSS,
        include_str!("../../web/assets/widget.css"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const INDEX: &str = include_str!("../../web/index.html");
const WIDGET: &str = include_str!("../../web/widget.html");

/// Scripts and styles from this origin only; avatars may come from Slack's CDN (or the simulator).
const CSP: &str = "default-src 'self'; img-src 'self' data: https: http:; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'";

fn page(body: &'static str, embeddable: bool) -> warp::reply::Response {
    let mut r = warp::reply::html(body).into_response();
    let h = r.headers_mut();
    let frame = if embeddable {
        format!("{CSP}; frame-ancestors *")
    } else {
        format!("{CSP}; frame-ancestors 'none'")
    };
    if let Ok(v) = HeaderValue::from_str(&frame) {
        h.insert("content-security-policy", v);
    }
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let index = warp::path::end()
        .and(warp::get())
        .map(|| page(INDEX, false));
    let widget = warp::path!("widget")
        .and(warp::get())
        .map(|| page(WIDGET, true));
    let assets = warp::path!("assets" / String)
        .and(warp::get())
        .map(
            |name: String| match ASSETS.iter().find(|(n, _, _)| *n == name) {
                Some((_, ty, body)) => {
                    let mut r = warp::reply::with_status(*body, StatusCode::OK).into_response();
                    let h = r.headers_mut();
                    h.insert("content-type", HeaderValue::from_static(ty));
                    h.insert("cache-control", HeaderValue::from_static("no-cache"));
                    h.insert(
                        "x-content-type-options",
                        HeaderValue::from_static("nosniff"),
                    );
                    r
                }
                None => super::ApiError::NotFound.to_response(),
            },
        );
    index.or(widget).unify().or(assets).unify()
}
