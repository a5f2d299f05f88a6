//! Printing a streamed list as it comes (DESIGN 3.7): text items one after another, JSON as
//! one array whose elements are written as they arrive, exactly as a pretty-printed array.
//! Nothing reaches stdout before the first item or the end, so a refused call prints nothing.

use std::io::{self, BufWriter, StdoutLock, Write};

use serde_json::Value;

use super::args::OutputFormat;

/// Writes one list to stdout.
#[derive(Debug)]
pub(super) struct ListPrinter {
    format: OutputFormat,
    text_separator: &'static str,
    out: BufWriter<StdoutLock<'static>>,
    count: u64,
}

impl ListPrinter {
    /// A printer in `format`; text items are separated by `text_separator`.
    pub(super) fn new(format: OutputFormat, text_separator: &'static str) -> Self {
        Self {
            format,
            text_separator,
            out: BufWriter::new(io::stdout().lock()),
            count: 0,
        }
    }

    /// Prints one item.
    ///
    /// # Errors
    /// One line when stdout cannot be written (a closed pipe).
    pub(super) fn item(&mut self, json: &Value, text: &str) -> Result<(), String> {
        let written = match self.format {
            OutputFormat::Json => {
                let pretty = serde_json::to_string_pretty(json).map_err(|e| e.to_string())?;
                let open = if self.count == 0 { "[\n" } else { ",\n" };
                self.out
                    .write_all(open.as_bytes())
                    .and_then(|()| indent(&mut self.out, &pretty))
            }
            OutputFormat::Text => {
                let separator = if self.count == 0 {
                    ""
                } else {
                    self.text_separator
                };
                write!(self.out, "{separator}{text}")
            }
        };
        self.count += 1;
        written.map_err(write_error)
    }

    /// Ends the list and flushes stdout.
    ///
    /// # Errors
    /// One line when stdout cannot be written.
    pub(super) fn finish(mut self) -> Result<(), String> {
        let end = match (self.format, self.count) {
            (OutputFormat::Json, 0) => "[]\n",
            (OutputFormat::Json, _) => "\n]\n",
            (OutputFormat::Text, 0) => "",
            (OutputFormat::Text, _) => "\n",
        };
        self.out
            .write_all(end.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(write_error)
    }
}

fn indent(out: &mut impl Write, pretty: &str) -> io::Result<()> {
    for (i, line) in pretty.lines().enumerate() {
        if i > 0 {
            out.write_all(b"\n")?;
        }
        write!(out, "  {line}")?;
    }
    Ok(())
}

fn write_error(e: io::Error) -> String {
    format!("cannot write the output: {e}")
}
