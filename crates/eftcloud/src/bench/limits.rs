//! The open-file limit: every simulated device holds a socket in this process, and the server
//! (a child, which inherits the limit) holds the other end.

/// Raises `RLIMIT_NOFILE` so that `wanted` descriptors fit, and returns the soft limit in force.
///
/// The soft limit is raised up to the hard limit, which any process may do. Past the hard
/// limit only a privileged process (root, or `CAP_SYS_RESOURCE`) may go; that is tried, and
/// its failure is not an error: the caller reports the limit that holds.
pub fn raise_open_files(wanted: u64) -> u64 {
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return 0;
    };
    if soft >= wanted {
        return soft;
    }
    if hard < wanted && Resource::NOFILE.set(wanted, wanted).is_ok() {
        return wanted;
    }
    let target = wanted.min(hard);
    if Resource::NOFILE.set(target, hard).is_ok() {
        return target;
    }
    soft
}
