//! Weir's web dashboard: one page that shows what the controller sees, what it decided and
//! why, live.
//!
//! The page (`web/index.html`, `web/app.js`, `web/view.js`, `web/app.css`) is our own,
//! unbundled and unminified; the chart library, uPlot, comes from npm through
//! `web/package.json` and its lockfile. The build script copies all of them into the binary,
//! so `weir` serves the dashboard with no files next to it. [`router`] mounts them at `/`
//! and `/assets/…`; the data comes from the recorder's API (`/api/history` to backfill,
//! `/api/events` live, `/api/state`), which the binary merges next to it.
//!
//! This crate serves files and nothing else: it never reads the recorder or the controller,
//! and it has no routes under `/api`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ct:literal) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!(env!("OUT_DIR"), "/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/assets/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!(
        "/assets/view.js",
        "view.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("/assets/app.css", "app.css", "text/css; charset=utf-8"),
    asset!(
        "/assets/uPlot.esm.js",
        "uPlot.esm.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/assets/uPlot.min.css",
        "uPlot.min.css",
        "text/css; charset=utf-8"
    ),
];

/// The page's content security policy: everything from this origin, nothing from anywhere
/// else. Styles may be inline because uPlot sizes its elements with style attributes.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

fn respond(asset: &'static Asset) -> Response {
    let mut resp = asset.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // The files change only with the binary; revalidating is cheap on localhost and keeps
    // an upgraded Weir from running yesterday's script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

/// The dashboard's routes: `/` and `/assets/…`. Merge it with the recorder's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |r, a| {
        r.route(a.path, get(move || async move { respond(a) }))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, String) {
        let resp = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_page_and_every_file_it_loads_are_served() {
        let (status, ct, page) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/html"), "{ct}");
        // Every local file the page references is one of ours.
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/assets/"))
        {
            let (status, _, body) = get(reference).await;
            assert_eq!(status, StatusCode::OK, "{reference}");
            assert!(!body.is_empty(), "{reference} is empty");
        }
        let (_, ct, app) = get("/assets/app.js").await;
        assert!(ct.starts_with("text/javascript"), "{ct}");
        assert!(
            app.contains("/api/events"),
            "the script reads the live stream"
        );
        let (_, _, uplot) = get("/assets/uPlot.esm.js").await;
        assert!(uplot.contains("export"), "uPlot's ES module build");
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let (status, _, _) = get("/assets/secret.txt").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get("/api/state").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the API is not ours");
    }
}
