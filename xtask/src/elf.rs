//! Just enough ELF64 reading to tell whether an executable is static: no
//! `PT_INTERP` (no dynamic loader) and no `DT_NEEDED` (no shared libraries).
//! A static-pie binary still has a `PT_DYNAMIC` segment (for its own
//! relocations) but needs nothing from outside.

use anyhow::{Context, Result, bail};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// The requested program interpreter (`/lib64/ld-linux-x86-64.so.2`), if any.
    pub interp: Option<String>,
    /// How many `DT_NEEDED` entries (shared libraries) the dynamic section lists.
    pub needed: usize,
}

impl ElfInfo {
    pub fn is_static(&self) -> bool {
        self.interp.is_none() && self.needed == 0
    }
}

fn slice(b: &[u8], off: u64, len: u64) -> Result<&[u8]> {
    let start = usize::try_from(off)?;
    let end = start
        .checked_add(usize::try_from(len)?)
        .context("ELF offset overflow")?;
    b.get(start..end)
        .with_context(|| format!("ELF truncated: wanted bytes {start}..{end} of {}", b.len()))
}

fn u16_at(b: &[u8], off: u64) -> Result<u16> {
    let s = slice(b, off, 2)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: u64) -> Result<u32> {
    let s = slice(b, off, 4)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: u64) -> Result<u64> {
    let s = slice(b, off, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// Reads the program headers of a little-endian ELF64 file.
pub fn inspect(b: &[u8]) -> Result<ElfInfo> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!("not an ELF file");
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        bail!("not a little-endian 64-bit ELF file");
    }
    let phoff = u64_at(b, 0x20)?;
    let phentsize = u64::from(u16_at(b, 0x36)?);
    let phnum = u64::from(u16_at(b, 0x38)?);
    if phentsize < 56 {
        bail!("bad program header size {phentsize}");
    }
    let mut info = ElfInfo {
        interp: None,
        needed: 0,
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32_at(b, ph)?;
        let p_offset = u64_at(b, ph + 8)?;
        let p_filesz = u64_at(b, ph + 32)?;
        match p_type {
            PT_INTERP => {
                let raw = slice(b, p_offset, p_filesz)?;
                let s = raw.split(|&c| c == 0).next().unwrap_or_default();
                info.interp = Some(String::from_utf8_lossy(s).into_owned());
            }
            PT_DYNAMIC => {
                let dynamic = slice(b, p_offset, p_filesz)?;
                for entry in dynamic.chunks_exact(16) {
                    let tag = u64_at(entry, 0)?;
                    if tag == DT_NULL {
                        break;
                    }
                    if tag == DT_NEEDED {
                        info.needed += 1;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header plus the given program headers and payload.
    fn elf(phdrs: &[(u32, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        let mut payload_off = 64 + 56 * phdrs.len();
        let mut payload = Vec::new();
        for (ty, data) in phdrs {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&ty.to_le_bytes());
            ph[8..16].copy_from_slice(&(payload_off as u64).to_le_bytes());
            ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            b.extend_from_slice(&ph);
            payload.extend_from_slice(data);
            payload_off += data.len();
        }
        b.extend_from_slice(&payload);
        b
    }

    fn dyn_entries(tags: &[u64]) -> Vec<u8> {
        tags.iter()
            .flat_map(|t| t.to_le_bytes().into_iter().chain(0u64.to_le_bytes()))
            .collect()
    }

    #[test]
    fn static_pie_is_static() {
        let d = dyn_entries(&[0x6fff_fffb, 7, DT_NULL, DT_NEEDED]);
        let info = inspect(&elf(&[(1, b"code"), (PT_DYNAMIC, &d)])).expect("parses");
        assert_eq!(
            info,
            ElfInfo {
                interp: None,
                needed: 0
            }
        );
        assert!(info.is_static());
    }

    #[test]
    fn dynamic_is_not_static() {
        let d = dyn_entries(&[DT_NEEDED, DT_NEEDED, DT_NULL]);
        let info = inspect(&elf(&[
            (PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0"),
            (PT_DYNAMIC, &d),
        ]))
        .expect("parses");
        assert_eq!(info.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(info.needed, 2);
        assert!(!info.is_static());
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        let exe = std::env::current_exe().expect("current exe");
        let bytes = std::fs::read(exe).expect("read exe");
        assert!(!inspect(&bytes).expect("parses").is_static());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(inspect(b"").is_err());
        assert!(inspect(b"#!/bin/sh\n").is_err());
        let mut truncated = elf(&[(PT_INTERP, b"/x\0")]);
        truncated.truncate(80);
        assert!(inspect(&truncated).is_err());
    }
}
