//! The Windows installer: the policies of `install/registry.rs` written
//! to the real `HKLM`, through the registry's C API (windows-sys is
//! already certagent's Windows dependency; these few calls need no more).
//! Always the 64-bit view (`KEY_WOW64_64KEY`), where the browsers look.

use std::io;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_NO_MORE_ITEMS, ERROR_SUCCESS};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY, KEY_WRITE, REG_CREATED_NEW_KEY,
    REG_OPTION_NON_VOLATILE, REG_SZ, RegCloseKey, RegCreateKeyExW, RegDeleteKeyExW,
    RegDeleteValueW, RegEnumValueW, RegOpenKeyExW, RegQueryInfoKeyW, RegSetValueExW,
};

use super::registry::{self, Hive};
use super::{InstallReport, Installer, RemoveReport};
use crate::browser_policy::{Origins, PolicyError};

/// The machine's registry (`HKLM`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine;

impl Installer for Machine {
    fn install(&self, origins: &Origins) -> Result<InstallReport, PolicyError> {
        registry::install(&mut Machine, origins)
    }

    fn remove(&self) -> Result<RemoveReport, PolicyError> {
        registry::remove(&mut Machine)
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn check(code: u32) -> io::Result<()> {
    if code == ERROR_SUCCESS {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code as i32))
    }
}

/// An open key, closed when dropped.
struct Key(HKEY);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegOpenKeyExW/RegCreateKeyExW and is
        // closed once.
        unsafe { RegCloseKey(self.0) };
    }
}

fn open(key: &str, access: u32) -> io::Result<Option<Key>> {
    let name = wide(key);
    let mut h: HKEY = null_mut();
    // SAFETY: `name` is NUL-terminated and outlives the call; `h` is written.
    let rc = unsafe {
        RegOpenKeyExW(
            HKEY_LOCAL_MACHINE,
            name.as_ptr(),
            0,
            access | KEY_WOW64_64KEY,
            &mut h,
        )
    };
    if rc == ERROR_FILE_NOT_FOUND {
        return Ok(None);
    }
    check(rc)?;
    Ok(Some(Key(h)))
}

/// (subkeys, longest value name in characters, longest value in bytes)
fn info(key: &Key) -> io::Result<(u32, u32, u32)> {
    let (mut subkeys, mut name_len, mut data_len) = (0u32, 0u32, 0u32);
    // SAFETY: every pointer is either null (not wanted) or a live u32.
    check(unsafe {
        RegQueryInfoKeyW(
            key.0,
            null_mut(),
            null_mut(),
            null(),
            &mut subkeys,
            null_mut(),
            null_mut(),
            null_mut(),
            &mut name_len,
            &mut data_len,
            null_mut(),
            null_mut(),
        )
    })?;
    Ok((subkeys, name_len, data_len))
}

fn text_of(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| match c {
            [a, b] => u16::from_le_bytes([*a, *b]),
            _ => 0,
        })
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

impl Hive for Machine {
    fn values(&self, key: &str) -> io::Result<Option<Vec<(String, Option<String>)>>> {
        let Some(k) = open(key, KEY_READ)? else {
            return Ok(None);
        };
        let (_, name_len, data_len) = info(&k)?;
        let mut out = Vec::new();
        for index in 0.. {
            let mut name = vec![0u16; name_len as usize + 1];
            let mut data = vec![0u8; data_len as usize + 2];
            let mut name_size = name.len() as u32;
            let mut data_size = data.len() as u32;
            let mut kind = 0u32;
            // SAFETY: the buffers are as long as the sizes passed.
            let rc = unsafe {
                RegEnumValueW(
                    k.0,
                    index,
                    name.as_mut_ptr(),
                    &mut name_size,
                    null(),
                    &mut kind,
                    data.as_mut_ptr(),
                    &mut data_size,
                )
            };
            if rc == ERROR_NO_MORE_ITEMS {
                break;
            }
            check(rc)?;
            let name = String::from_utf16_lossy(name.get(..name_size as usize).unwrap_or(&name));
            let text =
                (kind == REG_SZ).then(|| text_of(data.get(..data_size as usize).unwrap_or(&data)));
            out.push((name, text));
        }
        Ok(Some(out))
    }

    fn has_subkeys(&self, key: &str) -> io::Result<bool> {
        match open(key, KEY_READ)? {
            Some(k) => Ok(info(&k)?.0 > 0),
            None => Ok(false),
        }
    }

    fn create_key(&mut self, key: &str) -> io::Result<bool> {
        let name = wide(key);
        let mut h: HKEY = null_mut();
        let mut disposition = 0u32;
        // SAFETY: `name` is NUL-terminated; `h` and `disposition` are written.
        check(unsafe {
            RegCreateKeyExW(
                HKEY_LOCAL_MACHINE,
                name.as_ptr(),
                0,
                null(),
                REG_OPTION_NON_VOLATILE,
                KEY_WRITE | KEY_WOW64_64KEY,
                null(),
                &mut h,
                &mut disposition,
            )
        })?;
        drop(Key(h));
        Ok(disposition == REG_CREATED_NEW_KEY)
    }

    fn set(&mut self, key: &str, name: &str, text: &str) -> io::Result<()> {
        let k = open(key, KEY_WRITE)?.ok_or(io::ErrorKind::NotFound)?;
        let name = wide(name);
        let data: Vec<u8> = wide(text).iter().flat_map(|u| u.to_le_bytes()).collect();
        let len = u32::try_from(data.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `name` is NUL-terminated; `data` is `len` bytes.
        check(unsafe { RegSetValueExW(k.0, name.as_ptr(), 0, REG_SZ, data.as_ptr(), len) })
    }

    fn delete_value(&mut self, key: &str, name: &str) -> io::Result<()> {
        let Some(k) = open(key, KEY_WRITE)? else {
            return Ok(());
        };
        let name = wide(name);
        // SAFETY: `name` is NUL-terminated.
        match unsafe { RegDeleteValueW(k.0, name.as_ptr()) } {
            ERROR_FILE_NOT_FOUND => Ok(()),
            rc => check(rc),
        }
    }

    fn delete_key(&mut self, key: &str) -> io::Result<()> {
        let name = wide(key);
        // SAFETY: `name` is NUL-terminated.
        check(unsafe { RegDeleteKeyExW(HKEY_LOCAL_MACHINE, name.as_ptr(), KEY_WOW64_64KEY, 0) })
    }
}
