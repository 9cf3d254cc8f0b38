//! A minimal server-sent-events reader: enough for `GET /v1/events?follow=true`.

/// One dispatched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `event:` field; `None` for the default (`message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feeds bytes; returns the messages they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Message> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=nl).collect();
            let mut line = &raw[..raw.len() - 1];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = String::from_utf8_lossy(line);
            self.line(&line, &mut out);
        }
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<Message>) {
        if line.is_empty() {
            if self.data.is_some() || self.event.is_some() {
                out.push(Message {
                    event: self.event.take(),
                    data: self.data.take().unwrap_or_default(),
                });
            }
            return;
        }
        if line.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match self.data.as_mut() {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {} // id, retry: not needed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_across_chunks() {
        let mut p = Parser::default();
        assert!(p.push(b"data: {\"seq\":1}").is_empty());
        assert!(p.push(b"\n").is_empty());
        let m = p.push(
            b"\n: keep-alive\n\nevent: reset\r\ndata: {\"seq\":9}\r\n\r\ndata: a\ndata: b\n\n",
        );
        assert_eq!(
            m,
            vec![
                Message {
                    event: None,
                    data: "{\"seq\":1}".into()
                },
                Message {
                    event: Some("reset".into()),
                    data: "{\"seq\":9}".into()
                },
                Message {
                    event: None,
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_dispatched() {
        let mut p = Parser::default();
        let m = p.push(b"event: reset\n\n");
        assert_eq!(
            m,
            vec![Message {
                event: Some("reset".into()),
                data: String::new()
            }]
        );
    }
}
