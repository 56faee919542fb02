//! One HTTP/1.1 keep-alive connection: a minimal client over std's
//! `TcpStream`, enough to drive `conductor serve` (its gateway and API)
//! from benchmarks and the device script with nothing but std.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

/// One HTTP/1.1 keep-alive connection: a minimal client over std's
/// TcpStream (Content-Length or chunked bodies).
#[derive(Debug)]
pub struct Conn {
    addr: String,
    read_timeout: Duration,
    io: Option<(BufReader<TcpStream>, TcpStream)>,
    line: String,
    request: Vec<u8>,
}

impl Conn {
    /// A connection to `addr` (host:port), opened on first use, whose
    /// reads give up after 60 s.
    pub fn new(addr: &str) -> Conn {
        Conn::with_read_timeout(addr, Duration::from_secs(60))
    }

    pub fn with_read_timeout(addr: &str, read_timeout: Duration) -> Conn {
        Conn { addr: addr.to_owned(), read_timeout, io: None, line: String::new(), request: Vec::with_capacity(1024) }
    }

    pub fn post(&mut self, path: &str, key: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.send("POST", path, key, body)
    }

    pub fn send(&mut self, method: &str, path: &str, key: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        if self.io.is_none() {
            let stream = TcpStream::connect(&self.addr).with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.read_timeout))?;
            self.io = Some((BufReader::with_capacity(16 << 10, stream.try_clone()?), stream));
        }
        let result = self.exchange(method, path, key, body);
        if result.is_err() {
            self.io = None;
        }
        result
    }

    fn exchange(&mut self, method: &str, path: &str, key: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let (reader, writer) = self.io.as_mut().context("not connected")?;
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )?;
        self.request.extend_from_slice(body);
        writer.write_all(&self.request)?;
        self.line.clear();
        ensure!(reader.read_line(&mut self.line)? > 0, "connection closed");
        let status: u16 = self.line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("status line")?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            self.line.clear();
            ensure!(reader.read_line(&mut self.line)? > 0, "connection closed in headers");
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                self.line.clear();
                reader.read_line(&mut self.line)?;
                let size = usize::from_str_radix(self.line.trim().split(';').next().unwrap_or(""), 16)
                    .context("chunk size")?;
                if size == 0 {
                    self.line.clear();
                    reader.read_line(&mut self.line)?;
                    break;
                }
                let at = out.len();
                out.resize(at + size, 0);
                reader.read_exact(&mut out[at..])?;
                let mut crlf = [0u8; 2];
                reader.read_exact(&mut crlf)?;
            }
        } else {
            out.resize(length.context("no content-length")?, 0);
            reader.read_exact(&mut out)?;
        }
        if close {
            self.io = None;
        }
        Ok((status, out))
    }
}
