//! Just enough HTTP/1.1: request parsing (pure, over `BufRead`), responses, and
//! a one-shot client for `demo health` / `demo request`.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

const MAX_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    /// Percent-decoded path, always starting with `/`.
    pub path: String,
    /// Percent-decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub line: RequestLine,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.line
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request: answer 400.
    Bad(String),
    /// Too large: answer 413 / 431.
    TooLarge(&'static str),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Bad(m) => write!(f, "bad request: {m}"),
            HttpError::TooLarge(what) => write!(f, "{what} too large"),
        }
    }
}

fn bad(m: impl Into<String>) -> HttpError {
    HttpError::Bad(m.into())
}

/// `GET /config?x=1 HTTP/1.1` (without the line ending).
pub fn parse_request_line(line: &str) -> Result<RequestLine, HttpError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("malformed request line {line:?}")));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad(format!("bad method {method:?}")));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad(format!("unsupported version {version:?}")));
    }
    // Absolute form (`http://host/path`): keep the path.
    let target = match target.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        None => target,
    };
    if !target.starts_with('/') {
        return Err(bad(format!("bad request target {target:?}")));
    }
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_query(q)),
        None => (target, Vec::new()),
    };
    Ok(RequestLine {
        method: method.to_string(),
        path: percent_decode(path, false),
        query,
        version: version.to_string(),
    })
}

/// `a=1&b=two+words&flag` → `[(a,1), (b,"two words"), (flag,"")]`.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Decodes `%XX` (invalid escapes are kept verbatim); `+` is a space in queries.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&h| hex(h)),
                b.get(i + 2).and_then(|&l| hex(l)),
            )
        {
            // Two hex digits: at most 0xff.
            out.push(((h << 4) | l) as u8);
            i += 3;
            continue;
        }
        out.push(if c == b'+' && plus_is_space { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one line (at most `MAX_LINE` bytes), without its `\r\n` / `\n`.
/// `Ok(None)` at a clean end of stream.
fn read_line(r: &mut impl BufRead) -> Result<Option<String>, io::Error> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if n as u64 == MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads one request. `Ok(None)` when the peer closed before sending anything.
pub fn read_request(r: &mut impl BufRead) -> Result<Option<Request>, ReadError> {
    let line = match read_line(r).map_err(ReadError::from_io)? {
        None => return Ok(None),
        Some(l) => l,
    };
    let line = parse_request_line(&line).map_err(ReadError::Http)?;
    let mut headers = Vec::new();
    loop {
        let h = read_line(r)
            .map_err(ReadError::from_io)?
            .ok_or_else(|| ReadError::Http(bad("connection closed in headers")))?;
        if h.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Http(HttpError::TooLarge("header section")));
        }
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| ReadError::Http(bad(format!("malformed header {h:?}"))))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && !v.eq_ignore_ascii_case("identity"))
    {
        return Err(ReadError::Http(bad(
            "chunked request bodies are not supported",
        )));
    }
    let len = match headers.iter().find(|(n, _)| n == "content-length") {
        None => 0,
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Http(bad(format!("bad content-length {v:?}"))))?,
    };
    if len > MAX_BODY {
        return Err(ReadError::Http(HttpError::TooLarge("body")));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(ReadError::Io)?;
    Ok(Some(Request {
        line,
        headers,
        body,
    }))
}

#[derive(Debug)]
pub enum ReadError {
    Http(HttpError),
    Io(io::Error),
}

impl ReadError {
    fn from_io(e: io::Error) -> ReadError {
        if e.kind() == io::ErrorKind::InvalidData {
            ReadError::Http(HttpError::TooLarge("request line or header"))
        } else {
            ReadError::Io(e)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        write!(
            w,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `HTTP/1.1 200 OK` → 200.
pub fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// One request to `127.0.0.1:port`; returns the status and body. The server
/// always closes the connection, so the body is everything after the headers.
pub fn client_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers in response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .lines()
        .next()
        .and_then(parse_status_line)
        .ok_or_else(|| invalid("malformed status line"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn request_line_basic() {
        assert_eq!(
            parse_request_line("GET /health HTTP/1.1"),
            Ok(RequestLine {
                method: "GET".into(),
                path: "/health".into(),
                query: vec![],
                version: "HTTP/1.1".into(),
            })
        );
    }

    #[test]
    fn request_line_query_and_decoding() {
        let l = parse_request_line("POST /exit?code=3&x=a+b%21&flag HTTP/1.0").expect("parses");
        assert_eq!(l.method, "POST");
        assert_eq!(l.path, "/exit");
        assert_eq!(
            l.query,
            vec![
                ("code".into(), "3".into()),
                ("x".into(), "a b!".into()),
                ("flag".into(), "".into())
            ]
        );
        let l = parse_request_line("GET /a%20b+c#frag HTTP/1.1").expect("parses");
        assert_eq!(l.path, "/a b+c");
        let l = parse_request_line("GET http://example:8080/env?x=1 HTTP/1.1").expect("parses");
        assert_eq!(l.path, "/env");
        assert_eq!(l.query, vec![("x".into(), "1".into())]);
        let l = parse_request_line("GET http://example HTTP/1.1").expect("parses");
        assert_eq!(l.path, "/");
    }

    #[test]
    fn request_line_rejects() {
        for bad in [
            "",
            "GET",
            "GET /",
            "GET / HTTP/1.1 extra",
            "GET  / HTTP/1.1",
            "get / HTTP/1.1",
            "GET / HTTP/2",
            "GET health HTTP/1.1",
            "GET * HTTP/1.1",
        ] {
            assert!(parse_request_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding_edge_cases() {
        assert_eq!(percent_decode("%41%4a%zz%4", false), "AJ%zz%4");
        assert_eq!(percent_decode("%", false), "%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
    }

    #[test]
    fn reads_a_full_request() {
        let raw = b"POST /outputs?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Thing:  y \r\n\r\nhelloEXTRA";
        let req = read_request(&mut Cursor::new(&raw[..]))
            .expect("ok")
            .expect("some");
        assert_eq!(req.line.path, "/outputs");
        assert_eq!(req.query("a"), Some("1"));
        assert_eq!(req.query("b"), None);
        assert_eq!(req.body, b"hello");
        assert!(req.headers.contains(&("x-thing".into(), "y".into())));
        // Bare \n line endings are tolerated.
        let req = read_request(&mut Cursor::new(&b"GET / HTTP/1.0\n\n"[..]))
            .expect("ok")
            .expect("some");
        assert_eq!(req.line.path, "/");
    }

    #[test]
    fn read_request_errors() {
        assert!(matches!(read_request(&mut Cursor::new(&b""[..])), Ok(None)));
        assert!(matches!(
            read_request(&mut Cursor::new(&b"GET / HTTP/1.1\r\nbroken\r\n\r\n"[..])),
            Err(ReadError::Http(HttpError::Bad(_)))
        ));
        assert!(matches!(
            read_request(&mut Cursor::new(
                &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]
            )),
            Err(ReadError::Http(HttpError::Bad(_)))
        ));
        assert!(matches!(
            read_request(&mut Cursor::new(
                &b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"[..]
            )),
            Err(ReadError::Http(HttpError::TooLarge(_)))
        ));
        assert!(matches!(
            read_request(&mut Cursor::new(
                &b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"[..]
            )),
            Err(ReadError::Io(_))
        ));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
        assert!(matches!(
            read_request(&mut Cursor::new(long.as_bytes())),
            Err(ReadError::Http(HttpError::TooLarge(_)))
        ));
    }

    #[test]
    fn response_bytes() {
        let mut out = Vec::new();
        Response::text(200, "ok").write_to(&mut out).expect("write");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line("SSH-2.0 200"), None);
        assert_eq!(parse_status_line(""), None);
    }
}
