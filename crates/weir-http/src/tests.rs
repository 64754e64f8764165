use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::header;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route("/echo", post(|body: String| async move { body }))
}

async fn listening() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    (listener, addr)
}

/// `app` served with `limits` on a free port until the test ends; its address.
async fn serving(app: Router, limits: Limits) -> SocketAddr {
    let (listener, addr) = listening().await;
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    addr
}

/// Sends `request` on a new connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connects");
    conn.write_all(request.as_bytes()).await.expect("writes");
    let mut resp = Vec::new();
    // A reset instead of a clean close reads as what arrived before it.
    let _ = conn.read_to_end(&mut resp).await;
    String::from_utf8_lossy(&resp).into_owned()
}

const GET_HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn serves_and_stops_on_shutdown_letting_a_request_in_flight_finish() {
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let app = app().route(
        "/slow",
        get(move || async move {
            e.notify_one();
            r.notified().await;
            "done\n"
        }),
    );
    let (listener, addr) = listening().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, Limits::default(), async move {
        let _ = stopped.await;
    }));
    assert!(
        exchange(addr, GET_HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200")
    );

    let mut slow = TcpStream::connect(addr).await.expect("connects");
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    // The request is in its handler when the stop comes; it is let go after.
    entered.notified().await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    let mut resp = String::new();
    slow.read_to_string(&mut resp).await.expect("reads");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("done\n"), "{resp}");
    let done = tokio::time::timeout(Duration::from_secs(30), server).await;
    assert!(matches!(done, Ok(Ok(()))), "{done:?}");
    // No longer listening.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_header_is_cut_off() {
    let addr = serving(app(), Limits::default()).await;
    // Half a header, then silence (paused time: the timeout passes as soon as both sides
    // wait, without a real 10-s wait).
    let mut slow = TcpStream::connect(addr).await.expect("connects");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("writes");
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3600), slow.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the connection was never closed: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT * 2,
        "closed after {waited:?}"
    );
    // A client that sends its header in time is answered.
    assert!(
        exchange(addr, GET_HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_until_one_ends() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let addr = serving(app(), limits).await;
    // One idle connection holds the only slot (its header timeout is 10 s away).
    let holder = TcpStream::connect(addr).await.expect("connects");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = exchange(addr, GET_HEALTHZ).await;
    assert!(refused.is_empty(), "answered over the cap: {refused}");
    // The slot frees when the holder leaves.
    drop(holder);
    let mut answered = String::new();
    for _ in 0..100 {
        answered = exchange(addr, GET_HEALTHZ).await;
        if !answered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered:?}");
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let addr = serving(app(), Limits::default()).await;
    let mut conn = TcpStream::connect(addr).await.expect("connects");
    let local = conn.local_addr().expect("has an address");
    conn.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.expect("reads");
    assert!(resp.ends_with(&local.to_string()), "{resp}");
}

#[tokio::test]
async fn a_bounded_router_refuses_a_body_over_its_limit_with_413() {
    let addr = serving(
        bounded(app(), 16, Duration::from_secs(10)),
        Limits::default(),
    )
    .await;
    let post = |body: &str| {
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\n{}: {}\r\nConnection: close\r\n\r\n{body}",
            header::CONTENT_LENGTH,
            body.len()
        )
    };
    let ok = exchange(addr, &post("sixteen bytes ok")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("sixteen bytes ok"), "{ok}");
    let big = exchange(addr, &post("seventeen bytes!!")).await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
}

#[tokio::test(start_paused = true)]
async fn a_bounded_router_answers_408_when_the_handler_takes_too_long() {
    use tower::ServiceExt as _;
    let app = bounded(
        Router::new().route("/stuck", get(std::future::pending::<&'static str>)),
        1024,
        Duration::from_secs(10),
    );
    let resp = app
        .oneshot(
            axum::http::Request::get("/stuck")
                .body(Body::empty())
                .expect("builds"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
}
