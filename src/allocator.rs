//! The process's allocator: jemalloc, and the options it starts with. Also compiled into
//! the bench (`benches/pipeline/main.rs`), so the peers it plays (the no-op ceiling, axum
//! + serde_json) run on the same allocator as `exposures`.

/// jemalloc for every allocation in the process: Rust's through this, and, with its
/// unprefixed symbols, librdkafka's and SQLite's `malloc` too. On glibc's allocator ingest
/// spent about a fifth more CPU per single-event request (`cargo bench --bench pipeline
/// -- ratio`; README "Results").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start-up (`MALLOC_CONF` in the environment adds to
/// them). Allocations made at 256 KiB or more (request bodies, inflated gzip) get pages of
/// their own that go back to the OS when freed, as glibc's `mmap` threshold does: with
/// jemalloc's default they stayed resident for its 10 s decay, and a burst of large
/// hostile requests grew ingest by 119 MiB instead of 49–66
/// (`hostile::amplification_attack_keeps_resident_memory_bounded`). Small allocations,
/// the hot path's, are unaffected; a buffer that grows past 256 KiB in place stays where
/// it began. The purge on free holds while jemalloc's background threads are off, as they
/// are unless `MALLOC_CONF` turns them on. Linux only: elsewhere tikv-jemalloc-sys keeps
/// its symbols prefixed and this one would not be read.
#[cfg(target_os = "linux")]
#[allow(non_upper_case_globals)]
#[no_mangle]
static malloc_conf: &[u8; 26] = b"oversize_threshold:262144\0";
