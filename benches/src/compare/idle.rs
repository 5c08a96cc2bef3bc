//! Many idle TLS connections held open against a server, to read its
//! memory per connection: each connection completes a handshake and one
//! request (so it sits in the server's keep-alive state, as a partner's
//! pooled connection does), then stays open and silent.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Handshakes in flight at once while opening.
const OPENING_AT_ONCE: usize = 64;

pub fn connector(ca_pem: &str) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    roots.add(ca).map_err(|e| e.to_string())?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens `count` connections to `addr` (certificate name `localhost`),
/// each answering `request` with a 200, and returns them open.
pub async fn open(
    connector: &TlsConnector,
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    count: usize,
) -> Result<Vec<TlsStream<TcpStream>>, String> {
    let mut open = Vec::with_capacity(count);
    let mut opening = JoinSet::new();
    for _ in 0..count {
        if opening.len() >= OPENING_AT_ONCE {
            if let Some(done) = opening.join_next().await {
                open.push(done.map_err(|e| e.to_string())??);
            }
        }
        opening.spawn(one(connector.clone(), addr, request.clone()));
    }
    while let Some(done) = opening.join_next().await {
        open.push(done.map_err(|e| e.to_string())??);
    }
    Ok(open)
}

async fn one(
    connector: TlsConnector,
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(&request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    read_response(&mut tls).await?;
    Ok(tls)
}

/// Reads one HTTP/1.1 response (by `Content-Length` or chunked) and
/// insists on a 200.
async fn read_response(stream: &mut TlsStream<TcpStream>) -> Result<(), String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if response_complete(&buf)? {
            return Ok(());
        }
    }
}

/// Whether `buf` holds a whole 200 response; an error for another status.
pub fn response_complete(buf: &[u8]) -> Result<bool, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(false);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        let status = head.lines().next().unwrap_or_default().to_string();
        return Err(format!("answered `{status}`"));
    }
    let body = &buf[end + 4..];
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    Ok(match length {
        Some(length) => body.len() >= length,
        None => body.ends_with(b"0\r\n\r\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::response_complete;

    #[test]
    fn complete_by_length_or_last_chunk() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert!(!response_complete(head).unwrap());
        assert!(response_complete(&[&head[..], b"hello"].concat()).unwrap());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        assert!(!response_complete(chunked).unwrap());
        assert!(response_complete(&[&chunked[..], b"0\r\n\r\n"].concat()).unwrap());
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n").unwrap());
    }

    #[test]
    fn another_status_is_an_error() {
        let refused = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert!(response_complete(refused).unwrap_err().contains("401"));
    }
}
