use super::*;
use crate::index::tests::*;
use crate::model::*;
use std::path::Path;

#[test]
fn a_new_version_replaces_the_current_one_and_keeps_the_old() {
    let (_d, ix, root) = index();
    let p = Path::new("/srv/share/a.txt");
    ix.insert_version(p, root, &file(1, 10), 100).unwrap();
    ix.insert_version(p, root, &file(2, 20), 200).unwrap();
    let history = ix.history(p).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].replaced_at, Some(200));
    assert!(history[1].is_current());
    assert_eq!(ix.current(p).unwrap().unwrap().observed.size, 20);
}

#[test]
fn removing_a_folder_marks_its_whole_subtree_but_not_its_neighbours() {
    let (_d, ix, root) = index();
    for p in [
        "/srv/share/d/x",
        "/srv/share/d/e/y",
        "/srv/share/d0",
        "/srv/share/dx/z",
    ] {
        ix.insert_version(Path::new(p), root, &file(1, 1), 1)
            .unwrap();
    }
    let gone = Gone {
        at: 5,
        approx: false,
        last_seen: None,
        removal: Removal::MovedOut,
        by: None,
    };
    let n = ix
        .mark_removed(Path::new("/srv/share/d"), true, &gone)
        .unwrap();
    assert_eq!(n, 2);
    assert!(ix.current(Path::new("/srv/share/d0")).unwrap().is_some());
    assert!(ix.current(Path::new("/srv/share/dx/z")).unwrap().is_some());
    let moved = ix.latest(Path::new("/srv/share/d/e/y")).unwrap().unwrap();
    assert_eq!(moved.removal, Some(Removal::MovedOut));
}

#[test]
fn rename_moves_a_subtree_and_replaces_what_was_at_the_target() {
    let (_d, ix, root) = index();
    ix.insert_version(Path::new("/srv/share/old/f"), root, &file(1, 1), 1)
        .unwrap();
    ix.insert_version(Path::new("/srv/share/new/f"), root, &file(2, 2), 1)
        .unwrap();
    ix.rename(
        Path::new("/srv/share/old"),
        Path::new("/srv/share/new"),
        root,
        9,
    )
    .unwrap();
    assert!(ix.current(Path::new("/srv/share/old/f")).unwrap().is_none());
    let now = ix.current(Path::new("/srv/share/new/f")).unwrap().unwrap();
    assert_eq!(now.observed.size, 1);
    assert_eq!(ix.history(Path::new("/srv/share/new/f")).unwrap().len(), 2);
}

#[test]
fn non_utf8_paths_round_trip() {
    let (_d, ix, root) = index();
    let p = path_from_bytes(b"/srv/share/caf\xe9\n.txt".to_vec());
    ix.insert_version(&p, root, &file(1, 1), 1).unwrap();
    assert_eq!(ix.current(&p).unwrap().unwrap().path, p);
}
