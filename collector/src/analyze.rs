//! `collector analyze FILE`: runs the shared processor over a getStats recording and prints JSON lines.
//!
//! Output: one `{"kind":"interval", ...PeerMetrics}` object per peer connection per interval, in
//! recording order, then one `{"kind":"summary", ...Summary}` object per connection. Support
//! engineers pipe it into jq; the same processor runs in the extension, so the numbers match
//! what the customer's popup showed.

use serde::Serialize;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use vitals_shared::recording::{analyze, Analysis};

/// Why `analyze` failed: the exit code says whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The file could not be read (exit code 1).
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not a recording (exit code 2).
    #[error("{0}: {1}")]
    Malformed(String, vitals_shared::recording::RecordingError),
    /// Writing the output failed, for example a closed pipe (exit code 1).
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
}

impl AnalyzeError {
    /// The process exit code: 2 for a malformed recording, 1 for IO errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Malformed(..) => 2,
            Self::Read(..) | Self::Write(..) => 1,
        }
    }
}

/// Reads the recording at `path` (`-` is stdin) and writes the analysis to `out` as JSON lines.
pub fn run(path: &Path, out: &mut impl Write) -> Result<(), AnalyzeError> {
    let is_stdin = path == Path::new("-");
    let name = if is_stdin {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let text = if is_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| AnalyzeError::Read("stdin".into(), e))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| AnalyzeError::Read(name.clone(), e))?
    };
    let analysis = analyze(&text).map_err(|e| AnalyzeError::Malformed(name, e))?;
    write_lines(&analysis, out).map_err(AnalyzeError::Write)
}

/// One JSON object per line: intervals first, then summaries, each tagged with `kind`.
pub fn write_lines(analysis: &Analysis, out: &mut impl Write) -> std::io::Result<()> {
    for m in &analysis.intervals {
        writeln!(out, "{}", tagged("interval", m))?;
    }
    for s in &analysis.summaries {
        writeln!(out, "{}", tagged("summary", s))?;
    }
    out.flush()
}

fn tagged(kind: &str, value: &impl Serialize) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), kind.into());
    match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => object.extend(fields),
        Ok(other) => {
            object.insert("value".into(), other);
        }
        Err(e) => {
            object.insert("error".into(), e.to_string().into());
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::recording::Summary;
    use vitals_shared::PeerMetrics;

    #[test]
    fn lines_are_tagged_intervals_then_summaries() {
        let analysis = Analysis {
            intervals: vec![PeerMetrics {
                pc: "a".into(),
                upload_kbps: Some(12.5),
                ..PeerMetrics::default()
            }],
            summaries: vec![Summary {
                pc: "a".into(),
                intervals: 1,
                ..Summary::default()
            }],
        };
        let mut out = Vec::new();
        write_lines(&analysis, &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "interval");
        assert_eq!(lines[0]["upload_kbps"], 12.5);
        assert_eq!(lines[1]["kind"], "summary");
        assert_eq!(lines[1]["intervals"], 1);
    }

    #[test]
    fn malformed_recording_exits_2_and_missing_file_1() {
        let dir = std::env::temp_dir().join(format!("vitals-analyze-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.json");
        std::fs::write(&junk, "not json").unwrap();
        let error = run(&junk, &mut Vec::new()).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("not a recording"), "{error}");
        let error = run(&dir.join("missing.json"), &mut Vec::new()).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
