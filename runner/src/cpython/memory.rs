//! Reading another process's memory without stopping it.

use std::io::{self, IoSliceMut};

use nix::{
    sys::uio::{process_vm_readv, RemoteIoVec},
    unistd::Pid,
};

/// Memory of a process: a live one, or an image of one built by tests.
pub trait Memory {
    /// Fills `buf` from address `addr`; a short read is an error.
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Reads a little-endian u64.
    fn read_u64(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// The memory of live process `.0`.
#[derive(Clone, Copy, Debug)]
pub struct Process(pub u32);

impl Memory for Process {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        read(self.0, addr, buf)
    }
}

/// Fills `buf` from address `addr` of process `pid`; a short read is an error.
pub fn read(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let len = buf.len();
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let n = process_vm_readv(
        Pid::from_raw(pid as i32),
        &mut [IoSliceMut::new(buf)],
        &remote,
    )
    .map_err(io::Error::from)?;
    if n != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {n} of {len} bytes at {addr:#x} in process {pid}"),
        ));
    }
    Ok(())
}

/// True while process `pid` exists and is not a zombie (a zombie has no memory to read).
pub fn alive(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

/// Reads a little-endian u64.
pub fn read_u64(pid: u32, addr: u64) -> io::Result<u64> {
    let mut b = [0u8; 8];
    read(pid, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A little-endian u64 at `offset` of `bytes`, 0 when out of range.
pub fn u64_at(bytes: &[u8], offset: u64) -> u64 {
    let o = offset as usize;
    bytes
        .get(o..o + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

/// A little-endian u32 at `offset` of `bytes`, 0 when out of range.
pub fn u32_at(bytes: &[u8], offset: u64) -> u32 {
    let o = offset as usize;
    bytes
        .get(o..o + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_fails_on_unmapped() {
        let value: u64 = 0x1122_3344_5566_7788;
        let pid = std::process::id();
        assert_eq!(read_u64(pid, &raw const value as u64).unwrap(), value);
        assert!(read_u64(pid, 8).is_err());
        assert!(alive(pid));
        assert!(!alive(u32::MAX >> 1));
    }
}
