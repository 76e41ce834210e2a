//! The build script of cove-server and cove-agent (their Cargo.toml `build`): link flags of
//! the binaries only (the libraries and their tests are unaffected).
fn main() {
    // DT_RELR: the executable's relative relocations packed (a few KiB instead of MiBs of
    // `.rela.dyn`, which the loader reads at every start and which stayed resident). Needs
    // binutils >= 2.38 and glibc >= 2.36 (Debian 12); other targets link as before.
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu && std::env::var_os("COVE_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=COVE_NO_RELR");
}
