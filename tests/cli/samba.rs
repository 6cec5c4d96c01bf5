//! Files saved and deleted over the office's file share, as Windows PCs do it:
//! a real `smbd` on loopback serves the protected folder, `smbclient` plays the
//! PC, and what it deletes comes back byte-identical.

use std::fs;
use std::os::unix::fs::{MetadataExt, chown};

use crate::common::samba::Samba;
use crate::common::*;

#[test]
fn files_and_a_folder_deleted_over_the_share_come_back_whole() {
    let mut env = TestEnv::new();
    let Some(samba) = Samba::start(
        "files_and_a_folder_deleted_over_the_share_come_back_whole",
        &[("office", &env.share)],
    ) else {
        return;
    };
    let anna = samba.add_user("anna");
    chown(&env.share, Some(anna.uid), Some(anna.gid)).expect("give anna the share");
    env.start_daemon(&[]);

    // Saved from the PC: a letter, and a folder of photos inside a new folder.
    let upload = env.root.join("upload");
    fs::create_dir(&upload).unwrap();
    let letter = content(1, 40_000);
    fs::write(upload.join("letter.docx"), &letter).unwrap();
    let photos: Vec<Vec<u8>> = (0..12)
        .map(|i| content(100 + i, 300_000 + i * 1000))
        .collect();
    let local = |name: &str| upload.join(name).display().to_string();
    let mut commands = format!(
        "put {} letter.docx; mkdir jobs; mkdir jobs\\2026; ",
        local("letter.docx")
    );
    for (i, photo) in photos.iter().enumerate() {
        fs::write(upload.join(format!("p{i}.jpg")), photo).unwrap();
        commands.push_str(&format!(
            "put {} jobs\\2026\\p{i}.jpg; ",
            local(&format!("p{i}.jpg"))
        ));
    }
    let pc = samba.client(&anna, "office").on_pc("FRONTDESK");
    pc.run_ok(&commands);
    env.sync();
    let saved = env.path("jobs/2026/p3.jpg");
    assert_eq!(
        fs::read(&saved).unwrap(),
        photos[3],
        "smbd wrote what was put"
    );
    assert_eq!(
        fs::metadata(&saved).unwrap().uid(),
        anna.uid,
        "saved as anna"
    );

    // Deleted from the PC: the letter, then the whole folder.
    pc.run_ok("del letter.docx; deltree jobs");
    env.sync();
    assert!(!env.path("letter.docx").exists() && !env.path("jobs").exists());
    let listed = env.list_by_path(&[]);
    assert_deleted_and_recoverable(entry(&listed, &env.json_path("letter.docx")));
    assert_deleted_and_recoverable(entry(&listed, &env.json_path("jobs/2026/p11.jpg")));

    let (ok, report, text) = restore_json(&env, &["--under", env.share.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 13, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(fs::read(env.path("letter.docx")).unwrap(), letter);
    for (i, photo) in photos.iter().enumerate() {
        let back = env.path(format!("jobs/2026/p{i}.jpg"));
        assert_eq!(&fs::read(&back).unwrap(), photo, "{}", back.display());
        assert_eq!(fs::metadata(&back).unwrap().uid(), anna.uid, "anna's again");
    }
    // And the PC sees them again through the share.
    let listing = pc.run_ok("ls jobs\\2026\\*");
    assert!(listing.contains("p11.jpg"), "{listing}");
}
