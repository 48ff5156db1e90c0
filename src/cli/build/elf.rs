//! Section sizes of an ELF object file, summed the way binutils `size`
//! (Berkeley format) does, for any target (32/64-bit, either byte order), so
//! the footprint of a cross-compiled `model.o` needs no target binutils.

use anyhow::{bail, Result};

/// Bytes of code and read-only data, of initialised data, and of zeroed data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sizes {
    /// Allocated, not writable (code and constants).
    pub text: u64,
    /// Allocated, writable, with contents.
    pub data: u64,
    /// Allocated, writable, without contents (`SHT_NOBITS`).
    pub bss: u64,
}

const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;
const SHT_NOBITS: u32 = 8;

/// The sizes of the ELF file `bytes`.
pub fn sizes(bytes: &[u8]) -> Result<Sizes> {
    if bytes.len() < 0x34 || &bytes[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        c => bail!("unknown ELF class {c}"),
    };
    let big = bytes[5] == 2;
    let int = |at: usize, n: usize| -> Result<u64> {
        let s = bytes
            .get(at..at + n)
            .ok_or_else(|| anyhow::anyhow!("truncated ELF file"))?;
        Ok(if big {
            s.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b))
        } else {
            s.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b))
        })
    };
    let word = if wide { 8 } else { 4 };
    let (shoff, shentsize, shnum) = if wide {
        (int(0x28, 8)?, int(0x3a, 2)?, int(0x3c, 2)?)
    } else {
        (int(0x20, 4)?, int(0x2e, 2)?, int(0x30, 2)?)
    };
    let mut s = Sizes::default();
    for i in 0..shnum {
        let at = usize::try_from(shoff + i * shentsize)?;
        let kind = int(at + 4, 4)? as u32;
        let flags = int(at + 8, word)?;
        let size = int(at + if wide { 0x20 } else { 0x14 }, word)?;
        if flags & SHF_ALLOC == 0 {
            continue;
        }
        if kind == SHT_NOBITS {
            s.bss += size;
        } else if flags & SHF_WRITE != 0 {
            s.data += size;
        } else {
            s.text += size;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(sizes(b"not elf at all, not elf at all, not elf at all, not elf").is_err());
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(b"\x7fELF");
        head[4] = 2;
        head[0x28] = 0xff; // section headers beyond the end
        head[0x3c] = 1;
        assert!(sizes(&head).is_err());
    }

    #[test]
    fn the_running_binary_has_text() {
        let exe = std::env::current_exe().unwrap();
        let s = sizes(&std::fs::read(exe).unwrap()).unwrap();
        assert!(s.text > 0 && s.data > 0);
    }
}
