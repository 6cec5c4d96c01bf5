use super::*;
use std::io::Read;

#[test]
fn identical_content_is_stored_once_and_read_back_checked() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("v")).unwrap();
    let a = vault.store(&mut &b"hello"[..]).unwrap();
    let b = vault.store(&mut &b"hello"[..]).unwrap();
    assert!(a.is_new);
    assert!(!b.is_new);
    assert_eq!(a.id, b.id);
    assert_eq!(a.id.to_hex(), blake3::hash(b"hello").to_hex().to_string());
    assert!(!vault.contains(&a.id), "named only by the flush");
    vault.flush().unwrap();
    let c = vault.store(&mut &b"hello"[..]).unwrap();
    assert!(!c.is_new);
    let mut out = Vec::new();
    vault
        .open_object(&a.id)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, b"hello");
    assert_eq!(vault.verify(&a.id).unwrap(), 5);
}

#[test]
fn content_larger_than_one_buffer_is_streamed_and_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("v")).unwrap();
    let big: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
    let a = vault.store(&mut &big[..]).unwrap();
    let b = vault.store(&mut &big[..]).unwrap();
    assert!(a.is_new && !b.is_new, "the staged copy counts as kept");
    assert_eq!(a.size, big.len() as u64);
    assert_eq!(a.id.as_bytes(), blake3::hash(&big).as_bytes());
    assert!(matches!(
        vault.store_limited(&mut &big[..], CHUNK as u64),
        Err(StoreError::TooLarge(_))
    ));
    vault.flush().unwrap();
    assert_eq!(vault.verify(&a.id).unwrap(), big.len() as u64);
    assert_eq!(fs::read_dir(dir.path().join("v/tmp")).unwrap().count(), 0);
}

#[test]
fn copies_wait_for_the_flush_unnamed_up_to_the_limit_and_named_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut vault = Vault::open(&dir.path().join("v")).unwrap();
    vault.max_open_staged = 2;
    let contents: Vec<String> = (0..4).map(|i| format!("copy {i}")).collect();
    let ids: Vec<ObjectId> = contents
        .iter()
        .map(|c| vault.store(&mut c.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(
        vault.unnamed_works.get(),
        Some(&true),
        "O_TMPFILE works here"
    );
    let in_tmp = || fs::read_dir(dir.path().join("v/tmp")).unwrap().count();
    assert_eq!(in_tmp(), 2, "only the copies beyond the limit have names");
    assert!(
        ids.iter().all(|id| !vault.contains(id)),
        "named only by the flush"
    );
    vault.flush().unwrap();
    for (id, content) in ids.iter().zip(&contents) {
        assert_eq!(vault.verify(id).unwrap(), content.len() as u64);
    }
    assert_eq!(in_tmp(), 0);
    // The limit counts copies waiting now, not since the start.
    let more = vault.store(&mut &b"after the flush"[..]).unwrap();
    assert_eq!(in_tmp(), 0, "unnamed again");
    vault.flush().unwrap();
    assert!(vault.contains(&more.id));
}

#[test]
fn a_file_with_its_likely_content_is_hashed_and_one_that_differs_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("v")).unwrap();
    let photo: Vec<u8> = (0..CHUNK * 3).map(|i| (i % 253) as u8).collect();
    let kept = vault.store(&mut &photo[..]).unwrap();
    vault.flush().unwrap();
    let likely = Some(Likely {
        id: kept.id,
        size: photo.len() as u64,
    });
    let path = dir.path().join("photo.jpg");
    fs::write(&path, &photo).unwrap();
    let again = vault
        .store_file(&mut File::open(&path).unwrap(), u64::MAX, likely)
        .unwrap();
    assert_eq!((again.id, again.is_new), (kept.id, false));
    assert!(
        vault.staged.lock().unwrap().is_empty(),
        "nothing was copied"
    );

    // Same size, different content: the guess is wrong and the file is copied whole.
    let mut edited = photo.clone();
    edited[CHUNK * 2] ^= 1;
    fs::write(&path, &edited).unwrap();
    let new = vault
        .store_file(&mut File::open(&path).unwrap(), u64::MAX, likely)
        .unwrap();
    assert!(new.is_new);
    assert_eq!(new.id.as_bytes(), blake3::hash(&edited).as_bytes());
    vault.flush().unwrap();
    assert_eq!(vault.verify(&new.id).unwrap(), edited.len() as u64);
}

#[test]
fn a_discarded_copy_is_never_named_unless_another_store_claimed_it() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("v")).unwrap();
    let thrown = vault.store(&mut &b"read while it changed"[..]).unwrap();
    vault.discard(&thrown);
    let shared = vault.store(&mut &b"two files, one content"[..]).unwrap();
    let other = vault.store(&mut &b"two files, one content"[..]).unwrap();
    assert!(shared.is_new && !other.is_new);
    vault.discard(&shared);
    vault.flush().unwrap();
    assert!(!vault.contains(&thrown.id), "a discarded copy was named");
    assert!(
        vault.contains(&other.id),
        "the copy another store relies on went"
    );
    assert_eq!(vault.object_files().unwrap().len(), 1);
    assert_eq!(fs::read_dir(dir.path().join("v/tmp")).unwrap().count(), 0);
}

#[test]
fn a_damaged_object_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("v")).unwrap();
    let a = vault.store(&mut &b"precious photo"[..]).unwrap();
    vault.flush().unwrap();
    fs::write(vault.object_path(&a.id), b"precious phot0").unwrap();
    assert!(matches!(vault.verify(&a.id), Err(DamageError::Damaged)));
    fs::remove_file(vault.object_path(&a.id)).unwrap();
    assert!(matches!(vault.verify(&a.id), Err(DamageError::Missing)));
}

#[test]
fn a_full_disk_is_recognised_even_when_wrapped_with_a_path() {
    use std::io::Write as _;
    let mut dev_full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let full = dev_full.write_all(b"x").unwrap_err();
    assert!(is_disk_full(&full), "{full}");
    // What tempfile returns for a failed write: the kind kept, the OS code hidden.
    let wrapped = io::Error::new(full.kind(), format!("{full} at path \"/vault/tmp/x\""));
    assert_eq!(wrapped.raw_os_error(), None);
    assert!(is_disk_full(&wrapped), "{wrapped}");
    assert!(!is_disk_full(&io::Error::from(
        io::ErrorKind::PermissionDenied
    )));
}

#[test]
fn vault_folders_and_objects_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("v");
    let vault = Vault::open(&root).unwrap();
    let a = vault.store(&mut &b"x"[..]).unwrap();
    vault.flush().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("objects")), 0o700);
    assert_eq!(mode(&vault.object_path(&a.id)), 0o600);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}
