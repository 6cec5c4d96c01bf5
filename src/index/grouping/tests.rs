use crate::index::tests::*;
use crate::model::*;
use std::path::{Path, PathBuf};

#[test]
fn deletions_close_together_share_an_incident_across_calls() {
    let (_d, ix, root) = index();
    let delete = |p: &str, at: i64| {
        ix.insert_version(Path::new(p), root, &file(1, 10), 1)
            .unwrap();
        let gone = deleted_at(at);
        ix.mark_removed(Path::new(p), false, &gone).unwrap();
    };
    let mut n = 0;
    let mut code = || {
        n += 1;
        format!("C{n}")
    };
    delete("/srv/share/photos/a/1.jpg", 100);
    delete("/srv/share/photos/b/2.jpg", 150);
    delete("/srv/share/docs/late.txt", 1000);
    let changed = ix.group_incidents(100, &mut code).unwrap();
    assert_eq!(changed.len(), 2, "a gap of 850 starts a new incident");
    // A later batch joins the incident that is still open.
    delete("/srv/share/docs/later.txt", 1050);
    assert_eq!(
        ix.group_incidents(100, &mut code).unwrap(),
        vec![changed[1]]
    );

    let first = ix.incident(changed[0]).unwrap().unwrap();
    assert_eq!((first.files, first.bytes, first.recoverable), (2, 20, 2));
    assert_eq!((first.first_at, first.last_at), (100, 150));
    assert_eq!(first.folder, PathBuf::from("/srv/share/photos"));
    let second = ix.incident(changed[1]).unwrap().unwrap();
    assert_eq!(
        (second.files, second.first_at, second.last_at),
        (2, 1000, 1050)
    );
    assert_eq!(second.folder, PathBuf::from("/srv/share/docs"));
}

#[test]
fn a_merged_incidents_code_still_finds_it() {
    let (_d, ix, root) = index();
    let gone = deleted_at;
    ix.insert_version(Path::new("/srv/share/p"), root, &dir_observed(), 1)
        .unwrap();
    for (p, at) in [
        ("/srv/share/p/a/1.jpg", 100),
        ("/srv/share/p/b/2.jpg", 10_000_000_000),
    ] {
        ix.insert_version(Path::new(p), root, &file(1, 10), 1)
            .unwrap();
        ix.mark_removed(Path::new(p), false, &gone(at)).unwrap();
    }
    let mut codes = ["AAA-AAA", "BBB-BBB"].into_iter().map(String::from);
    let gap = 60_000_000_000;
    assert_eq!(
        ix.group_incidents(gap, &mut || codes.next().unwrap())
            .unwrap()
            .len(),
        2
    );
    ix.raise_alert(
        &crate::model::AlertKind::MassDeletion("BBB-BBB".into()),
        "m",
        1,
    )
    .unwrap();
    // The rm -rf reached the folder holding both.
    ix.mark_removed(Path::new("/srv/share/p"), true, &gone(11_000_000_000))
        .unwrap();
    ix.group_incidents(gap, &mut || unreachable!()).unwrap();
    let listed = ix.incidents(10).unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!((listed[0].code.as_str(), listed[0].files), ("AAA-AAA", 2));
    assert_eq!(listed[0].folder, PathBuf::from("/srv/share/p"));
    assert_eq!(
        ix.incident_by_code("BBB-BBB").unwrap().unwrap().code,
        "AAA-AAA"
    );
    // The alert told under the other code goes on under the one that stays.
    let open = ix.open_alerts().unwrap();
    assert_eq!(
        open[0].kind,
        crate::model::AlertKind::MassDeletion("AAA-AAA".into())
    );
}

#[test]
fn an_empty_folder_deleted_with_its_neighbours_files_is_part_of_their_incident() {
    let (_d, ix, root) = index();
    // Recorded parent first, as a scan records them; all gone in one batch.
    for p in ["/srv/share/acc", "/srv/share/acc/empty"] {
        ix.insert_version(Path::new(p), root, &dir_observed(), 1)
            .unwrap();
    }
    ix.insert_version(Path::new("/srv/share/acc/q.xls"), root, &file(1, 5), 1)
        .unwrap();
    let gone = deleted_at(100);
    ix.mark_removed(Path::new("/srv/share/acc"), true, &gone)
        .unwrap();
    let id = ix.group_incidents(1000, &mut || "K7Q-4MD".into()).unwrap()[0];
    let listed = ix.incidents(10).unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(
        (listed[0].folder.as_path(), listed[0].files),
        (Path::new("/srv/share/acc"), 1)
    );
    // Taken after the files it was deleted with, so a restore of the incident
    // brings the empty folder back too.
    for p in ["/srv/share/acc/empty", "/srv/share/acc"] {
        let folder = ix.latest(Path::new(p)).unwrap().unwrap();
        assert_eq!(folder.incident_id, Some(id), "{p}");
    }
}

fn dir_observed() -> Observed {
    Observed {
        kind: EntryKind::Dir,
        object: None,
        ..file(0, 0)
    }
}
