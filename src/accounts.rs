//! Users and groups by name, as the system's account database knows them.
//!
//! Only looks up; never changes an account. Names are for people's messages
//! ("belongs to the user bob") and for settings that name a group.

use std::ffi::{CStr, CString};

/// "the user bob (uid 1001)", or "the user with uid 1001" when it has no name.
pub fn user_name(uid: u32) -> String {
    match lookup_user(uid) {
        Some(name) => format!("the user {name} (uid {uid})"),
        None => format!("the user with uid {uid}"),
    }
}

/// The name of user `uid`, if it has one.
pub fn user_called(uid: u32) -> Option<String> {
    lookup_user(uid)
}

/// The group id of the group called `name`.
pub fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: every pointer passed is valid for the call, and `result` points into
    // `group` (or is null) only while `buf` lives.
    unsafe {
        let mut group: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            name.as_ptr(),
            &mut group,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(group.gr_gid)
    }
}

/// The name of group `gid`, if it has one.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in `group_id`; the name is copied out before `buf` is dropped.
    unsafe {
        let mut group: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(
            gid,
            &mut group,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(CStr::from_ptr(group.gr_name).to_string_lossy().into_owned())
    }
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in `group_id`; the name is copied out before `buf` is dropped.
    unsafe {
        let mut user: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut user,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(CStr::from_ptr(user.pw_name).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_its_group_have_names() {
        assert_eq!(user_name(0), "the user root (uid 0)");
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-here"), None);
        assert_eq!(user_name(3_999_999), "the user with uid 3999999");
    }
}
