//! Small text files beside or inside a model (`config.json`, `tokenizer.json`,
//! a shard index, a container's IR text), read with a size bound: a hostile
//! model folder cannot make egret read an unbounded file into memory.

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// Read `path` as UTF-8 text of at most `limit` bytes. A larger file or one that
/// is not UTF-8 is an [`ErrorKind::InvalidData`] error. The bound is applied
/// while reading, so a file that grows after a size check cannot slip past it.
pub(crate) fn read(path: &Path, limit: u64) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than the {limit}-byte limit for a text file"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_utf8_text() {
        let dir = std::env::temp_dir().join(format!("egret-text-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        std::fs::write(&p, "{\"x\": 1}").unwrap();
        assert_eq!(read(&p, 8).unwrap(), "{\"x\": 1}");
        let e = read(&p, 7).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains("7-byte limit"), "{e}");
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert!(read(&p, 8).unwrap_err().to_string().contains("not UTF-8"));
        assert_eq!(
            read(&dir.join("none"), 8).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
