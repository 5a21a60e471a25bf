//! Rebuild the programs when `bpf-linker` changes: building this crate has an
//! undeclared dependency on that binary (see aya's template for the history).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"loongarch64\", \"mips\", \"powerpc64\", \"s390x\"))");
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
