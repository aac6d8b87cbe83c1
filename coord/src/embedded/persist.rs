//! The embedded coordinator's durable state: every key and the write counter (which also
//! issues fencing tokens), in one JSON file replaced by rename after every change.
//!
//! Write: `coord-state.json.tmp` written and fsynced, renamed over `coord-state.json`, the
//! directory fsynced. A crash leaves either the old or the new file; a leftover `.tmp` is
//! ignored and overwritten.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::error::{CoordError, CoordResult};

pub(crate) const STATE_FILE: &str = "coord-state.json";
const STATE_FORMAT: u32 = 1;
/// A state file larger than this is refused rather than read into memory.
const STATE_BYTES_MAX: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEntry {
    pub(crate) value: Vec<u8>,
    pub(crate) version: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Durable {
    /// The last index handed out (a key version or a fencing token).
    pub(crate) index: u64,
    pub(crate) kv: BTreeMap<String, StoredEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    key: String,
    version: u64,
    value_base64: String,
}

#[derive(Serialize, Deserialize)]
struct FileState {
    format: u32,
    index: u64,
    entries: Vec<FileEntry>,
}

pub(crate) fn load(dir: &Path) -> CoordResult<Durable> {
    let path = dir.join(STATE_FILE);
    let io = |source| CoordError::Io {
        path: path.clone(),
        source,
    };
    let corrupt = |detail: String| CoordError::Corrupt {
        path: path.clone(),
        detail,
    };
    let bytes = match fs::metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Durable::default());
        }
        Err(error) => return Err(io(error)),
        Ok(meta) if meta.len() > STATE_BYTES_MAX => {
            return Err(corrupt(format!(
                "{} bytes, more than {STATE_BYTES_MAX}",
                meta.len()
            )));
        }
        Ok(_) => fs::read(&path).map_err(io)?,
    };
    let file: FileState =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
    if file.format != STATE_FORMAT {
        return Err(corrupt(format!("unknown format {}", file.format)));
    }
    let mut durable = Durable {
        index: file.index,
        kv: BTreeMap::new(),
    };
    for entry in file.entries {
        let value = BASE64
            .decode(entry.value_base64.as_bytes())
            .map_err(|error| corrupt(format!("value of {:?}: {error}", entry.key)))?;
        if entry.version > file.index {
            return Err(corrupt(format!(
                "version {} of {:?} above the index {}",
                entry.version, entry.key, file.index
            )));
        }
        let version = entry.version;
        durable.kv.insert(entry.key, StoredEntry { value, version });
    }
    Ok(durable)
}

pub(crate) fn store(dir: &Path, durable: &Durable) -> CoordResult<()> {
    let file = FileState {
        format: STATE_FORMAT,
        index: durable.index,
        entries: durable
            .kv
            .iter()
            .map(|(key, entry)| FileEntry {
                key: key.clone(),
                version: entry.version,
                value_base64: BASE64.encode(&entry.value),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|error| CoordError::Corrupt {
        path: dir.join(STATE_FILE),
        detail: format!("cannot encode: {error}"),
    })?;
    let tmp: PathBuf = dir.join(format!("{STATE_FILE}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CoordError::Io { path, source }
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    out.write_all(&bytes).map_err(io(&tmp))?;
    out.sync_all().map_err(io(&tmp))?;
    drop(out);
    let target = dir.join(STATE_FILE);
    fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Durable::default());
        let mut durable = Durable {
            index: 7,
            ..Durable::default()
        };
        durable.kv.insert(
            "a/b".into(),
            StoredEntry {
                value: vec![0, 255, 10],
                version: 7,
            },
        );
        store(dir.path(), &durable).unwrap();
        assert_eq!(load(dir.path()).unwrap(), durable);

        fs::write(dir.path().join(STATE_FILE), b"{\"format\":1,").unwrap();
        assert!(matches!(load(dir.path()), Err(CoordError::Corrupt { .. })));
    }
}
