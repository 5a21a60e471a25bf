//! Load-time patching of the eBPF object: aya 0.14 cannot relocate kfunc
//! calls, so the programs call a marker helper number
//! (`RDONLY_CAST_MARKER`, see observer-ebpf `kernel::rdonly_cast`) and the
//! agent rewrites those instructions before handing the object to aya:
//! into a call of the `bpf_rdonly_cast` kfunc by its BTF id (kernel 6.2+),
//! or into `r0 = 0` when the kernel has no such kfunc, which sends the
//! programs down their helper-read path.
use object::{Object as _, ObjectSection as _, SectionFlags};

/// Call number of the marker (no BPF helper has it).
pub const RDONLY_CAST_MARKER: i32 = 32767;

const BPF_CALL: u8 = 0x85;
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;
const MOV64_IMM_R0: u8 = 0xb7;

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the embedded eBPF object is not a valid ELF file: {0}")]
    Elf(#[from] object::Error),
}

/// Patches every marker call in executable sections; returns the patched
/// object and how many instructions changed.
pub fn patch_rdonly_cast(elf: &[u8], kfunc_btf_id: Option<u32>) -> Result<(Vec<u8>, usize), PatchError> {
    let mut out = elf.to_vec();
    let file = object::File::parse(elf)?;
    let mut patched = 0;
    for section in file.sections() {
        let exec = match section.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0,
            _ => false,
        };
        let Some((start, size)) = section.file_range() else { continue };
        if !exec {
            continue;
        }
        let (start, size) = (usize::try_from(start).unwrap_or(usize::MAX), usize::try_from(size).unwrap_or(0));
        let Some(code) = out.get_mut(start..start.saturating_add(size)) else { continue };
        for insn in code.chunks_exact_mut(8) {
            let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            // A plain helper call (src_reg 0, off 0) to the marker number.
            if insn[0] == BPF_CALL && insn[1] == 0 && insn[2] == 0 && insn[3] == 0 && imm == RDONLY_CAST_MARKER {
                match kfunc_btf_id {
                    Some(id) => {
                        insn[1] = BPF_PSEUDO_KFUNC_CALL << 4; // src_reg = 2, dst_reg = 0
                        insn[4..8].copy_from_slice(&id.to_le_bytes());
                    }
                    None => insn.copy_from_slice(&[MOV64_IMM_R0, 0, 0, 0, 0, 0, 0, 0]),
                }
                patched += 1;
            }
        }
    }
    Ok((out, patched))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker_sites(elf: &[u8]) -> usize {
        patch_rdonly_cast(elf, Some(1)).map(|(_, n)| n).unwrap_or(0)
    }

    /// Guards the contract with observer-ebpf: the embedded programs carry
    /// the marker, and patching replaces every site.
    #[test]
    fn embedded_programs_carry_the_marker_and_all_of_it_is_patched() {
        let sites = marker_sites(super::super::PROGRAMS);
        assert!(sites >= 1, "no cast marker in the embedded object");
        let (kfunc, n) = patch_rdonly_cast(super::super::PROGRAMS, Some(65475)).unwrap();
        assert_eq!(n, sites);
        assert_eq!(marker_sites(&kfunc), 0, "patched object still has markers");
        let (mov, n) = patch_rdonly_cast(super::super::PROGRAMS, None).unwrap();
        assert_eq!(n, sites);
        assert_eq!(marker_sites(&mov), 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(patch_rdonly_cast(b"not an elf", None).is_err());
    }
}
