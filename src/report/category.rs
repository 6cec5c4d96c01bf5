//! The kinds of file a report counts apart (images, documents, …), told by the
//! name's extension alone: nothing is opened to find out.

use std::path::Path;

/// The kinds of file the summary counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Images,
    Documents,
    Video,
    Audio,
    Archives,
    Other,
}

impl Category {
    pub fn of(path: &Path) -> Self {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "jpg" | "jpeg" | "png" | "gif" | "heic" | "heif" | "tif" | "tiff" | "bmp" | "webp"
            | "raw" | "cr2" | "cr3" | "nef" | "arw" | "dng" | "orf" | "rw2" | "psd" | "svg" => {
                Self::Images
            }
            "pdf" | "doc" | "docx" | "xls" | "xlsx" | "ppt" | "pptx" | "odt" | "ods" | "odp"
            | "txt" | "rtf" | "csv" | "md" | "pages" | "numbers" | "key" | "eml" | "msg" => {
                Self::Documents
            }
            "mp4" | "mov" | "avi" | "mkv" | "m4v" | "wmv" | "mpg" | "mpeg" | "webm" | "mts" => {
                Self::Video
            }
            "mp3" | "wav" | "flac" | "aac" | "m4a" | "ogg" | "wma" | "aiff" | "opus" => Self::Audio,
            "zip" | "tar" | "gz" | "tgz" | "bz2" | "xz" | "7z" | "rar" | "zst" => Self::Archives,
            _ => Self::Other,
        }
    }

    /// The key in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Images => "images",
            Self::Documents => "documents",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Archives => "archives",
            Self::Other => "other",
        }
    }

    pub(super) fn noun(self, n: u64) -> &'static str {
        match (self, n == 1) {
            (Self::Images, true) => "image",
            (Self::Images, false) => "images",
            (Self::Documents, true) => "document",
            (Self::Documents, false) => "documents",
            (Self::Video, true) => "video",
            (Self::Video, false) => "videos",
            (Self::Audio, true) => "audio file",
            (Self::Audio, false) => "audio files",
            (Self::Archives, true) => "archive",
            (Self::Archives, false) => "archives",
            (Self::Other, true) => "other file",
            (Self::Other, false) => "other files",
        }
    }
}
