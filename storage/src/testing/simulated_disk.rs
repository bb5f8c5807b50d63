//! A simulated disk for the power-loss tests: a [`FileSystem`] that writes
//! through to a real directory (so reads and memory maps see the files) while
//! keeping, beside it, what a power cut would leave: each file's contents as of
//! its last sync, and each directory's entries as of its last sync.
//!
//! The model is the POSIX promise and no more: a file's data is durable after
//! `fsync` of the file; a name created, renamed or deleted in a directory is
//! durable after `fsync` of the directory. A rename is one atomic change (even
//! across directories), as journaling file systems make it. Which unsynced
//! directory changes a crash keeps is up to the file system, so the test can
//! ask for an image with any subset of them.
//!
//! Power goes off after a chosen number of operations: that operation and
//! every later one fails, and the real directory stays as it was.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{FileSystem, WriteFile};

type NodeId = usize;

enum Node {
    File {
        /// Everything written, as the page cache holds it.
        written: Vec<u8>,
        /// The contents as of the last sync.
        synced: Vec<u8>,
    },
    Dir {
        live: BTreeMap<String, NodeId>,
        synced: BTreeMap<String, NodeId>,
    },
}

/// One change to directory entries (`None` removes the name), applied whole.
#[derive(Clone)]
struct EntryChange(Vec<(NodeId, String, Option<NodeId>)>);

impl EntryChange {
    fn touches(&self, dir: NodeId) -> bool {
        self.0.iter().any(|(d, _, _)| *d == dir)
    }
}

struct Disk {
    root: PathBuf,
    /// Node 0 is `root`.
    nodes: Vec<Node>,
    /// Directory changes not yet synced, oldest first.
    pending: Vec<EntryChange>,
    /// Operations that changed something (or tried to).
    ops: u64,
    power_off_after: Option<u64>,
}

/// The shared simulated disk; clone it to hand it to a catalog.
#[derive(Clone)]
pub(crate) struct SimulatedDisk(Arc<Mutex<Disk>>);

/// What a power cut leaves of the directory changes not yet synced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unsynced {
    /// Only what was synced (file contents and directory entries).
    Nothing,
    /// Also these unsynced directory changes (a bit per change, oldest first).
    Entries(u64),
    /// Everything written: every change and every file's latest contents.
    Everything,
}

impl SimulatedDisk {
    /// A disk whose root is the (empty) real directory `root`; the power goes
    /// off after `power_off_after` operations, or never.
    pub(crate) fn new(root: &Path, power_off_after: Option<u64>) -> Self {
        let root_node = Node::Dir {
            live: BTreeMap::new(),
            synced: BTreeMap::new(),
        };
        SimulatedDisk(Arc::new(Mutex::new(Disk {
            root: root.to_path_buf(),
            nodes: vec![root_node],
            pending: Vec::new(),
            ops: 0,
            power_off_after,
        })))
    }

    /// An environment for a catalog: this disk and the system clock.
    pub(crate) fn env(&self) -> crate::fs::Environment {
        crate::fs::Environment {
            fs: Arc::new(self.clone()),
            clock: crate::clock::system(),
        }
    }

    /// Operations so far.
    pub(crate) fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Directory changes not yet synced.
    pub(crate) fn unsynced_changes(&self) -> usize {
        self.lock().pending.len()
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what a power cut now would leave into the empty real directory
    /// `into`, keeping the unsynced changes `keep` says.
    pub(crate) fn crash_image(&self, into: &Path, keep: Unsynced) -> io::Result<()> {
        let disk = self.lock();
        let mut dirs: Vec<BTreeMap<String, NodeId>> = disk
            .nodes
            .iter()
            .map(|n| match n {
                Node::Dir { synced, .. } => synced.clone(),
                Node::File { .. } => BTreeMap::new(),
            })
            .collect();
        for (i, change) in disk.pending.iter().enumerate() {
            let kept = match keep {
                Unsynced::Nothing => false,
                Unsynced::Entries(mask) => i < 64 && mask & (1 << i) != 0,
                Unsynced::Everything => true,
            };
            if kept {
                for (dir, name, node) in &change.0 {
                    match node {
                        Some(n) => dirs[*dir].insert(name.clone(), *n),
                        None => dirs[*dir].remove(name),
                    };
                }
            }
        }
        let everything = matches!(keep, Unsynced::Everything);
        disk.materialize(0, into, &dirs, everything)
    }
}

impl Disk {
    fn materialize(
        &self,
        node: NodeId,
        at: &Path,
        dirs: &[BTreeMap<String, NodeId>],
        everything: bool,
    ) -> io::Result<()> {
        match &self.nodes[node] {
            Node::File { written, synced } => {
                std::fs::write(at, if everything { written } else { synced })
            }
            Node::Dir { .. } => {
                std::fs::create_dir_all(at)?;
                for (name, child) in &dirs[node] {
                    self.materialize(*child, &at.join(name), dirs, everything)?;
                }
                Ok(())
            }
        }
    }

    /// Counts an operation; fails it if the power is off.
    fn tick(&mut self) -> io::Result<()> {
        self.ops += 1;
        match self.power_off_after {
            Some(n) if self.ops > n => Err(io::Error::other("simulated power loss")),
            _ => Ok(()),
        }
    }

    fn components(&self, path: &Path) -> io::Result<Vec<String>> {
        let rest = path.strip_prefix(&self.root).map_err(|_| {
            io::Error::other(format!("{} is outside the simulated disk", path.display()))
        })?;
        rest.components()
            .map(|c| match c {
                Component::Normal(s) => Ok(s.to_string_lossy().into_owned()),
                other => Err(io::Error::other(format!("unexpected path part {other:?}"))),
            })
            .collect()
    }

    fn entries(&mut self, dir: NodeId) -> io::Result<&mut BTreeMap<String, NodeId>> {
        match &mut self.nodes[dir] {
            Node::Dir { live, .. } => Ok(live),
            Node::File { .. } => Err(io::Error::other("not a directory")),
        }
    }

    fn lookup(&mut self, path: &Path) -> io::Result<Option<NodeId>> {
        let mut node = 0;
        for part in self.components(path)? {
            match self.entries(node)?.get(&part) {
                Some(n) => node = *n,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// The directory holding `path`, and the name in it.
    fn parent(&mut self, path: &Path) -> io::Result<(NodeId, String)> {
        let mut parts = self.components(path)?;
        let name = parts
            .pop()
            .ok_or_else(|| io::Error::other("the root has no parent"))?;
        let mut node = 0;
        for part in parts {
            node = *self
                .entries(node)?
                .get(&part)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        }
        Ok((node, name))
    }

    fn change(&mut self, change: EntryChange) -> io::Result<()> {
        for (dir, name, node) in &change.0 {
            let entries = self.entries(*dir)?;
            match node {
                Some(n) => entries.insert(name.clone(), *n),
                None => entries.remove(name),
            };
        }
        self.pending.push(change);
        Ok(())
    }

    fn file(&mut self, node: NodeId) -> io::Result<(&mut Vec<u8>, &mut Vec<u8>)> {
        match &mut self.nodes[node] {
            Node::File { written, synced } => Ok((written, synced)),
            Node::Dir { .. } => Err(io::Error::other("a directory")),
        }
    }
}

/// A file open on the simulated disk.
struct SimulatedFile {
    disk: SimulatedDisk,
    node: NodeId,
    real: File,
}

impl FileSystem for SimulatedDisk {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        let mut disk = self.lock();
        disk.tick()?;
        let node = match disk.lookup(path)? {
            Some(node) => {
                disk.file(node)?.0.clear();
                node
            }
            None => {
                let (dir, name) = disk.parent(path)?;
                disk.nodes.push(Node::File {
                    written: Vec::new(),
                    synced: Vec::new(),
                });
                let node = disk.nodes.len() - 1;
                disk.change(EntryChange(vec![(dir, name, Some(node))]))?;
                node
            }
        };
        let real = File::create(path)?;
        Ok(Arc::new(SimulatedFile {
            disk: self.clone(),
            node,
            real,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        let mut disk = self.lock();
        disk.tick()?;
        let node = disk
            .lookup(path)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.file(node)?;
        let real = OpenOptions::new().append(true).open(path)?;
        Ok(Arc::new(SimulatedFile {
            disk: self.clone(),
            node,
            real,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.tick()?;
        let node = disk
            .lookup(from)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let (from_dir, from_name) = disk.parent(from)?;
        let (to_dir, to_name) = disk.parent(to)?;
        disk.change(EntryChange(vec![
            (from_dir, from_name, None),
            (to_dir, to_name, Some(node)),
        ]))?;
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.remove_file_or_dir(path, |p| std::fs::remove_file(p))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.remove_file_or_dir(path, |p| std::fs::remove_dir_all(p))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.tick()?;
        let mut node = 0;
        for part in disk.components(path)? {
            node = match disk.entries(node)?.get(&part) {
                Some(n) => *n,
                None => {
                    disk.nodes.push(Node::Dir {
                        live: BTreeMap::new(),
                        synced: BTreeMap::new(),
                    });
                    let child = disk.nodes.len() - 1;
                    disk.change(EntryChange(vec![(node, part, Some(child))]))?;
                    child
                }
            };
        }
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.tick()?;
        let dir = disk
            .lookup(path)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let (now, later): (Vec<EntryChange>, Vec<EntryChange>) = std::mem::take(&mut disk.pending)
            .into_iter()
            .partition(|c| c.touches(dir));
        disk.pending = later;
        for change in now {
            for (d, name, node) in change.0 {
                if let Node::Dir { synced, .. } = &mut disk.nodes[d] {
                    match node {
                        Some(n) => synced.insert(name, n),
                        None => synced.remove(&name),
                    };
                }
            }
        }
        Ok(())
    }
}

impl SimulatedDisk {
    fn remove_file_or_dir(&self, path: &Path, real: fn(&Path) -> io::Result<()>) -> io::Result<()> {
        let mut disk = self.lock();
        disk.tick()?;
        let (dir, name) = disk.parent(path)?;
        disk.change(EntryChange(vec![(dir, name, None)]))?;
        real(path)
    }
}

impl WriteFile for SimulatedFile {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.tick()?;
        disk.file(self.node)?.0.extend_from_slice(bytes);
        let mut real: &File = &self.real;
        Write::write_all(&mut real, bytes)
    }

    fn sync(&self) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.tick()?;
        let (written, synced) = disk.file(self.node)?;
        synced.clone_from(written);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.tick()?;
        let len_usize = usize::try_from(len).map_err(io::Error::other)?;
        disk.file(self.node)?.0.resize(len_usize, 0);
        self.real.set_len(len)
    }
}
