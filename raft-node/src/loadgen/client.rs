//! A minimal HTTP/1.1 client: one keep-alive connection, one request in
//! flight. Enough for the load generator and the binary's tests, and no
//! more; it never follows redirects by itself (callers decide).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Why a request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The connection failed mid-request (closed, reset).
    #[error("request to {addr} failed: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The error.
        source: hyper::Error,
    },
    /// The request could not be built (bad path or header).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No answer within the deadline.
    #[error("request to {0} timed out")]
    Timeout(String),
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Conn {
    addr: String,
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Http {
                addr: addr.to_owned(),
                source,
            })?;
        let driver = tokio::spawn(async move {
            // The connection ends when the server closes it or the Conn is
            // dropped; either is normal here.
            let _ = conn.await;
        });
        Ok(Conn {
            addr: addr.to_owned(),
            sender,
            driver,
        })
    }

    /// The address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, self.addr.as_str());
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ClientError::Invalid(e.to_string()))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| ClientError::Invalid(e.to_string()))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|source| ClientError::Http {
                addr: self.addr.clone(),
                source,
            })?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|source| ClientError::Http {
                addr: self.addr.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                addr: self.addr.clone(),
                source,
            })?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Connects, sends one request, and gives up after `timeout`.
pub async fn request(
    addr: &str,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let fut = async {
        let mut c = Conn::connect(addr).await?;
        c.request(method, path_and_query, headers, body).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout(addr.to_owned()))?
}
