//! Checks that a file is a whole shared library for this machine before anyone dlopens
//! it: glibc maps the file and a truncated one dies with SIGBUS inside `dlopen`, with no
//! error to catch (shared/NOTES.md).

use object::{
    read::elf::{ElfFile64, FileHeader, ProgramHeader},
    Architecture, Endianness, Object, ObjectKind,
};

/// Why a file is not a loadable library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF shared library ({0})")]
    NotElf(String),
    #[error("a damaged or truncated ELF file ({0})")]
    Damaged(String),
    #[error("an ELF file but not a shared library (it is {0:?})")]
    NotShared(ObjectKind),
    #[error("built for {found:?}, this host is {expected:?}")]
    WrongArchitecture {
        found: Architecture,
        expected: Architecture,
    },
    #[error("incomplete: {what} ends at byte {end} but the file has {len} bytes (truncated or still being written)")]
    Truncated {
        what: &'static str,
        end: u64,
        len: u64,
    },
}

/// The architecture this binary was built for, as `object` names it.
fn host_architecture() -> Architecture {
    match std::env::consts::ARCH {
        "x86_64" => Architecture::X86_64,
        "aarch64" => Architecture::Aarch64,
        "riscv64" => Architecture::Riscv64,
        "powerpc64" => Architecture::PowerPc64,
        "s390x" => Architecture::S390x,
        _ => Architecture::Unknown,
    }
}

/// `Ok` when `bytes` are a complete 64-bit ELF shared library for this machine: headers,
/// section table and every segment lie within the file.
pub fn check_complete(bytes: &[u8]) -> Result<(), ElfError> {
    let file =
        ElfFile64::<Endianness>::parse(bytes).map_err(|e| {
            match object::FileKind::parse(bytes) {
                Ok(object::FileKind::Elf64) => ElfError::Damaged(e.to_string()),
                _ => ElfError::NotElf(e.to_string()),
            }
        })?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(ElfError::NotShared(file.kind()));
    }
    let expected = host_architecture();
    if file.architecture() != expected {
        return Err(ElfError::WrongArchitecture {
            found: file.architecture(),
            expected,
        });
    }
    let len = bytes.len() as u64;
    let endian = file.endian();
    for header in file.elf_program_headers() {
        let end = header
            .p_offset(endian)
            .saturating_add(header.p_filesz(endian));
        if end > len {
            return Err(ElfError::Truncated {
                what: "a segment",
                end,
                len,
            });
        }
    }
    let header = file.elf_header();
    let sections_end = header
        .e_shoff(endian)
        .saturating_add(u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian)));
    if sections_end > len {
        return Err(ElfError::Truncated {
            what: "the section table",
            end: sections_end,
            len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared library every Rust test binary links against on Linux.
    fn a_real_library() -> Vec<u8> {
        for candidate in [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/lib64/libc.so.6",
        ] {
            if let Ok(bytes) = std::fs::read(candidate) {
                return bytes;
            }
        }
        panic!("no libc.so.6 found to test the ELF check against");
    }

    #[test]
    fn a_whole_library_passes() {
        assert_eq!(check_complete(&a_real_library()), Ok(()));
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = a_real_library();
        for cut in [
            0,
            1,
            16,
            63,
            64,
            1000,
            4096,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            let err = check_complete(&bytes[..cut]);
            assert!(
                err.is_err(),
                "a library cut at {cut} of {} bytes passed",
                bytes.len()
            );
        }
    }

    #[test]
    fn text_is_refused() {
        assert!(matches!(
            check_complete(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf(_))
        ));
        assert!(matches!(check_complete(b""), Err(ElfError::NotElf(_))));
    }
}
