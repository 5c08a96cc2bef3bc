//! Drives the example upstream over a real socket with hand-written HTTP/1.1, so the bytes
//! on the wire are exactly the ones the test wrote.

use std::net::SocketAddr;

use portcullis_example_upstream::spawn;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// Sends `head` (request line and headers, without the blank line) plus `body`, and reads
/// the response until the server closes the connection.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of response head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let response = Response {
        status,
        headers,
        body,
    };
    if let Some(length) = response.header("content-length") {
        assert_eq!(length.parse::<usize>().unwrap(), response.body.len());
    }
    response
}

async fn start() -> (SocketAddr, portcullis_example_upstream::Recorder) {
    let (addr, recorder, _handle) = spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (addr, recorder)
}

fn assert_leaky_headers(response: &Response) {
    assert_eq!(response.header("server"), Some("Apache/2.4.41 (Ubuntu)"));
    assert_eq!(response.header("x-powered-by"), Some("PHP/7.4.3"));
    assert!(response.header("x-internal-trace-id").is_some());
}

#[tokio::test]
async fn post_is_recorded_byte_for_byte() {
    let (addr, recorder) = start().await;
    // Odd spacing, a trailing newline and non-ASCII text must all survive unchanged.
    let body = "{ \"sku\":\"BOLT-7\" ,\"quantity\": 3, \"note\":\"größe ✓\" }\n".as_bytes();
    let response = send(
        addr,
        "POST /partners/acme/orders?dry=0&x=%20 HTTP/1.1\r\n\
         Content-Type: application/json\r\nX-Partner-Key: k-123\r\nX-Dup: one\r\nX-Dup: two",
        body,
    )
    .await;
    assert_eq!(response.status, 201);
    assert_leaky_headers(&response);
    let order = response.json();
    assert_eq!(order["partner"], "acme");
    assert_eq!(order["sku"], "BOLT-7");
    assert_eq!(order["quantity"], 3);
    assert_eq!(
        response.header("location"),
        Some(format!("/partners/acme/orders/{}", order["id"].as_str().unwrap()).as_str())
    );

    let requests = recorder.requests();
    assert_eq!(requests.len(), 1);
    let recorded = &requests[0];
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path_and_query, "/partners/acme/orders?dry=0&x=%20");
    assert_eq!(recorded.body, body);
    assert_eq!(recorded.header("X-PARTNER-KEY"), Some("k-123"));
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    assert_eq!(recorded.header("x-dup"), Some("one"));
    assert_eq!(recorded.header_count("X-Dup"), 2);
    assert_eq!(recorded.header_count("cookie"), 0);

    // Bodies that are not text are recorded exactly too.
    let binary: Vec<u8> = (0..=255).collect();
    let echo = send(addr, "PUT /echo/raw HTTP/1.1", &binary).await;
    assert_eq!(echo.status, 200);
    let echoed = echo.json();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["path_and_query"], "/echo/raw");
    assert_eq!(echoed["body_len"], 256);
    assert_eq!(recorder.len(), 2);
    assert_eq!(recorder.requests()[1].body, binary);
}

#[tokio::test]
async fn list_is_partner_scoped_and_leaky() {
    let (addr, _recorder) = start().await;
    let response = send(addr, "GET /partners/acme/orders HTTP/1.1", b"").await;
    assert_eq!(response.status, 200);
    assert_leaky_headers(&response);
    let list = response.json();
    assert_eq!(list["partner"], "acme");
    let orders = list["orders"].as_array().unwrap();
    assert!((2..=3).contains(&orders.len()));
    assert_eq!(orders[0]["id"], "acme-1001");
    for order in orders {
        assert_eq!(order["partner"], "acme");
        assert_eq!(order["status"], "open");
        assert!(order["internal_cost_cents"].is_i64());
        assert!(order["db_shard"].as_str().unwrap().starts_with("shard-"));
        assert_eq!(order["created_by"], "svc-orders@10.0.4.17");
    }

    let other = send(addr, "GET /partners/globex/orders/acme-1001 HTTP/1.1", b"").await;
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"], "order not found");
    let own = send(
        addr,
        "GET /partners/globex/orders/globex-1002 HTTP/1.1",
        b"",
    )
    .await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json()["partner"], "globex");
}

#[tokio::test]
async fn explode_leaks_a_stack_trace() {
    let (addr, _recorder) = start().await;
    let response = send(
        addr,
        "GET /partners/acme/orders/acme-1001/explode HTTP/1.1",
        b"",
    )
    .await;
    assert_eq!(response.status, 500);
    assert_leaky_headers(&response);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let trace = response.text();
    assert!(trace.contains("Stack trace:"));
    assert!(trace.contains("SELECT o.id"));
    assert!(trace.contains("db-primary.internal:5432"));
}

#[tokio::test]
async fn invalid_json_leaks_parser_internals() {
    let (addr, recorder) = start().await;
    let response = send(addr, "POST /partners/acme/orders HTTP/1.1", b"{\"sku\": ").await;
    assert_eq!(response.status, 400);
    let error = response.json();
    assert!(error["error"].as_str().unwrap().contains("EOF"));
    assert!(error["trace"].as_str().unwrap().contains("#0 /var/www/"));
    assert_eq!(recorder.requests()[0].body, b"{\"sku\": ");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_but_recorded() {
    let (addr, recorder) = start().await;
    let response = send(addr, "GET /admin/../etc/passwd?q=1 HTTP/1.1", b"").await;
    assert_eq!(response.status, 404);
    assert_leaky_headers(&response);
    let error = response.json();
    assert_eq!(error["error"], "not found");
    assert_eq!(error["path"], "/admin/../etc/passwd");

    let response = send(
        addr,
        "DELETE /partners/acme/orders/acme-1001 HTTP/1.1",
        b"x",
    )
    .await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));

    let requests = recorder.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path_and_query, "/admin/../etc/passwd?q=1");
    assert_eq!(requests[1].method, "DELETE");
    assert_eq!(requests[1].body, b"x");

    recorder.clear();
    assert!(recorder.is_empty());
}

#[tokio::test]
async fn test_helpers_behave() {
    let (addr, _recorder) = start().await;
    let slow = send(addr, "GET /slow?ms=20 HTTP/1.1", b"").await;
    assert_eq!(slow.json()["slept_ms"], 20);

    let big = send(addr, "GET /big?bytes=1000 HTTP/1.1", b"").await;
    assert_eq!(big.header("content-type"), Some("application/octet-stream"));
    let expected: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    assert_eq!(big.body, expected);

    let health = send(addr, "GET /healthz HTTP/1.1", b"").await;
    assert_eq!((health.status, health.text()), (200, "ok"));

    let spec = send(addr, "GET /openapi.yaml HTTP/1.1", b"").await;
    assert_eq!(spec.header("content-type"), Some("application/yaml"));
    assert_eq!(spec.text(), portcullis_example_upstream::OPENAPI_YAML);
}
