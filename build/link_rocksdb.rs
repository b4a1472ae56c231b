//! The build script of every package whose binaries or tests link RocksDB
//! (their manifests say `build = "../build/link_rocksdb.rs"`).
//!
//! With `ROCKSDB_STATIC` set (`.cargo/config.toml` sets it), the
//! `librocksdb-sys` crate links Debian's static archive, `librocksdb.a`,
//! whose compression code calls snappy, lz4, zstd, bzip2 and zlib. This
//! names those libraries as link arguments, which come last on the link
//! line, after the archive: a library named before it would be dropped as
//! not needed yet. A build script's link arguments, unlike `rustflags` in
//! `.cargo/config.toml`, still apply when a user sets `RUSTFLAGS` (which
//! replaces the configured flags). Libraries the archive does not call
//! (the bundled build of `scripts/build-static` calls none) are dropped
//! by the linker.

/// The libraries Debian's `librocksdb.a` calls.
const COMPRESSION: [&str; 5] = ["snappy", "lz4", "zstd", "bz2", "z"];

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in COMPRESSION {
            println!("cargo:rustc-link-arg=-l{lib}");
        }
    }
}
