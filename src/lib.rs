//! undelete: a recycle bin for Linux file servers.
//!
//! The parts, in the order data flows (each uses only those before it):
//!
//! - Ground floor: `clock` (time), `words` (paths, counts, sizes, wrapping,
//!   quoting, the commands people type), `ids` (object ids, incident codes),
//!   `names` (what a name alone says), `signs` (of encryption in a new
//!   version), `accounts` (users and groups), `model`
//!   (what the index records, without SQL), `config` (the settings and the rules
//!   other parts follow), `grouping` (which incident a deletion joins).
//! - Storage: `vault` (content-addressed copies and the writer lock), `journal`
//!   (the append-only record), `index` (SQLite, by table, writing the journal
//!   ahead of every commit).
//! - Recording: `incident` (incidents and their alerts' words), `email`,
//!   `retention` (what is kept and the purge), `control` (the socket's client),
//!   `announce` and `amend` (what a restore or a command tells the daemon), and
//!   `watch`, the daemon itself (events → look → vault + index).
//! - Reading back: `rebuild` (the index from the journal), `report` (what came
//!   back and what did not), `restore` (plan, then bring back), `saved_reports`,
//!   `mount` (the vault as read-only folders, for Samba's Previous Versions),
//!   `samba` (the lines a share needs for them), and `diagnosis` (is protection
//!   working).
//! - The top: `cli`, which nothing imports.

mod accounts;
mod amend;
mod announce;
mod cli;
mod clock;
mod config;
mod control;
mod diagnosis;
mod email;
mod grouping;
mod ids;
mod incident;
mod index;
mod journal;
mod model;
mod mount;
mod names;
mod rebuild;
mod report;
mod restore;
mod retention;
mod samba;
mod saved_reports;
mod signs;
mod vault;
mod watch;
mod words;

pub use cli::main;
pub use words::wrap;
