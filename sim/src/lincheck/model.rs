//! Sequential specifications ("models") the checker linearizes against, and the trait to add
//! more.
//!
//! Role: decode each call's JSON values once, up front, into small typed inputs and outputs,
//! and step a small `Copy` state. The search hashes and compares states millions of times, so
//! every model keeps its states as interned ids (`u32`): equal ids if and only if equal
//! contents. Strings that grow by `append` and queue contents are hash-consed: the model keeps
//! each distinct content once and memoizes each transition, so a step is one table lookup.
//!
//! Invariants:
//! - `step` is a pure function of (state, input, output) as far as the search can tell:
//!   interning only adds entries, it never changes what an id means.
//! - `is_read_only(input, output)` is true only if every successor `step` can give equals the
//!   state it started from; the search relies on it to prune (see `search.rs`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hash};

use serde_json::Value;

use super::search::FxHasher;

type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A sequential specification.
///
/// The checker decodes every call with `decode_input` / `decode_output`, groups calls by
/// `partition` (P-compositionality: calls in different partitions act on independent objects
/// and are checked separately, each from `init`), then searches for an order in which `step`
/// accepts every `ok` call (and any subset of the `info` ones).
pub trait Model {
    /// The object's state; cheap to copy, compare and hash.
    type State: Copy + Eq + Hash + Debug;
    /// A call's argument, decoded.
    type Input: Debug;
    /// A call's observed result, decoded.
    type Output: Debug;

    /// Name, as in a history file's `model` field.
    fn name(&self) -> &'static str;

    /// The `f` names this model knows.
    fn functions(&self) -> &'static [&'static str];

    /// The initial state of every partition, from the history's `init` (`null` = empty).
    fn init(&mut self, init: &Value) -> Result<Self::State, String>;

    /// Decodes the argument of an invoke; `f` is one of `functions()`.
    fn decode_input(&mut self, f: &str, value: &Value) -> Result<Self::Input, String>;

    /// Decodes the value of the `ok` completing a call with this input.
    fn decode_output(&mut self, input: &Self::Input, value: &Value)
        -> Result<Self::Output, String>;

    /// The partition a call belongs to; by default its `key` (each key an independent object).
    fn partition<'k>(&self, key: Option<&'k str>) -> Result<Option<&'k str>, String> {
        Ok(key)
    }

    /// True if this call, wherever it is accepted, leaves the state unchanged. `output` is
    /// `None` for calls whose result is unknown (`info`).
    fn is_read_only(&self, input: &Self::Input, output: Option<&Self::Output>) -> bool;

    /// Lookahead, for pruning: `observer` is an `ok` read-only call that must be linearized
    /// before anything but `others` (the calls that may come before it). Returns false only if
    /// no sequence of some of `others` (each at most once, in any order, with any outcome) can
    /// take `state` to a state that accepts `observed`. The default never prunes.
    fn can_reach<'a>(
        &mut self,
        state: Self::State,
        observer: &Self::Input,
        observed: &Self::Output,
        others: impl Iterator<Item = &'a Self::Input>,
    ) -> bool
    where
        Self::Input: 'a,
    {
        let _ = (state, observer, observed, others);
        true
    }

    /// Pushes onto `successors` every state the object can be in after applying `input` to
    /// `state` and observing `output` (`None`: the result is unknown, any result will do).
    /// Pushes nothing if the observation is impossible in `state`.
    fn step(
        &mut self,
        state: Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
        successors: &mut Vec<Self::State>,
    );

    /// The state as JSON, for witnesses.
    fn describe_state(&self, state: Self::State) -> Value;
}

/// Interns JSON values: equal values get equal ids. Id 0 is always `null`.
///
/// Two values are equal when their JSON texts are (serde_json's maps are ordered, so the text
/// is canonical). Non-negative integers and strings, the usual values (job ids, tokens), are
/// looked up by the integer or the string itself, without writing their text; since such a
/// value's text is never looked up in `id_by_text`, every value still has one id.
#[derive(Debug)]
pub struct ValueInterner {
    /// Non-negative integers (serde_json's `PosInt`: `as_u64` is `None` for floats).
    id_by_u64: HashMap<u64, u32, FxBuildHasher>,
    /// Strings, by their contents.
    id_by_string: HashMap<String, u32, FxBuildHasher>,
    /// Every other value, by its JSON text.
    id_by_text: HashMap<String, u32, FxBuildHasher>,
    values: Vec<Value>,
}

impl Default for ValueInterner {
    fn default() -> Self {
        let mut interner = ValueInterner {
            id_by_u64: HashMap::default(),
            id_by_string: HashMap::default(),
            id_by_text: HashMap::default(),
            values: Vec::new(),
        };
        let null_id = interner.intern(&Value::Null);
        assert_eq!(null_id, ValueInterner::NULL);
        interner
    }
}

impl ValueInterner {
    /// The id of `null`.
    pub const NULL: u32 = 0;

    /// The id of `value`, allocated on first sight.
    pub fn intern(&mut self, value: &Value) -> u32 {
        let next_id = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
        let id = if let Some(integer) = value.as_u64() {
            *self.id_by_u64.entry(integer).or_insert(next_id)
        } else if let Value::String(text) = value {
            match self.id_by_string.get(text.as_str()) {
                Some(&id) => id,
                None => *self.id_by_string.entry(text.clone()).or_insert(next_id),
            }
        } else {
            *self.id_by_text.entry(value.to_string()).or_insert(next_id)
        };
        if id == next_id {
            self.values.push(value.clone());
        }
        id
    }

    /// The value of an id handed out by `intern`.
    pub fn value(&self, id: u32) -> &Value {
        &self.values[id as usize]
    }
}

/// A read/write register (`register`), optionally with compare-and-set (`cas-register`).
/// The state is the interned value held; `null` means it holds nothing.
#[derive(Debug)]
pub struct RegisterModel {
    with_cas: bool,
    values: ValueInterner,
}

/// A register call's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Write this value.
    Write(u32),
    /// If the register holds `from`, replace it with `to`.
    Cas {
        /// Expected value.
        from: u32,
        /// New value.
        to: u32,
    },
}

/// A register call's observed result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read.
    Read(u32),
    /// The write happened.
    Written,
    /// Whether the compare-and-set swapped.
    Cas(bool),
}

impl RegisterModel {
    /// A plain read/write register.
    pub fn register() -> Self {
        RegisterModel { with_cas: false, values: ValueInterner::default() }
    }

    /// A register with compare-and-set.
    pub fn cas_register() -> Self {
        RegisterModel { with_cas: true, values: ValueInterner::default() }
    }
}

impl Model for RegisterModel {
    type State = u32;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn name(&self) -> &'static str {
        if self.with_cas {
            "cas-register"
        } else {
            "register"
        }
    }

    fn functions(&self) -> &'static [&'static str] {
        if self.with_cas {
            &["read", "write", "cas"]
        } else {
            &["read", "write"]
        }
    }

    fn init(&mut self, init: &Value) -> Result<u32, String> {
        Ok(self.values.intern(init))
    }

    fn decode_input(&mut self, f: &str, value: &Value) -> Result<RegisterInput, String> {
        match f {
            "read" => Ok(RegisterInput::Read),
            "write" => Ok(RegisterInput::Write(self.values.intern(value))),
            "cas" => match value.as_array().map(Vec::as_slice) {
                Some([from, to]) => Ok(RegisterInput::Cas {
                    from: self.values.intern(from),
                    to: self.values.intern(to),
                }),
                _ => Err(format!("cas takes [from, to], found {value}")),
            },
            _ => Err(format!("unknown f {f:?}")),
        }
    }

    fn decode_output(
        &mut self,
        input: &RegisterInput,
        value: &Value,
    ) -> Result<RegisterOutput, String> {
        match *input {
            RegisterInput::Read => Ok(RegisterOutput::Read(self.values.intern(value))),
            RegisterInput::Write(written) => {
                if value.is_null() || self.values.intern(value) == written {
                    Ok(RegisterOutput::Written)
                } else {
                    Err(format!(
                        "a write's ok carries the value written ({}), found {value}",
                        self.values.value(written)
                    ))
                }
            }
            RegisterInput::Cas { .. } => match value {
                Value::Bool(swapped) => Ok(RegisterOutput::Cas(*swapped)),
                _ => Err(format!("a cas's ok carries true or false, found {value}")),
            },
        }
    }

    fn is_read_only(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> bool {
        match (input, output) {
            (RegisterInput::Read, _) => true,
            (RegisterInput::Cas { .. }, Some(RegisterOutput::Cas(false))) => true,
            (RegisterInput::Cas { from, to }, _) => from == to,
            (RegisterInput::Write(_), _) => false,
        }
    }

    fn can_reach<'a>(
        &mut self,
        state: u32,
        _observer: &RegisterInput,
        observed: &RegisterOutput,
        mut others: impl Iterator<Item = &'a RegisterInput>,
    ) -> bool {
        let RegisterOutput::Read(target) = *observed else {
            return true;
        };
        // Only a write or a cas of the value read can bring it back.
        state == target
            || others.any(|input| match *input {
                RegisterInput::Write(written) => written == target,
                RegisterInput::Cas { to, .. } => to == target,
                RegisterInput::Read => false,
            })
    }

    fn step(
        &mut self,
        state: u32,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
        successors: &mut Vec<u32>,
    ) {
        match (*input, output) {
            (RegisterInput::Read, Some(&RegisterOutput::Read(read))) => {
                if read == state {
                    successors.push(state);
                }
            }
            (RegisterInput::Read, _) => successors.push(state),
            (RegisterInput::Write(written), _) => successors.push(written),
            (RegisterInput::Cas { from, to }, Some(&RegisterOutput::Cas(true))) => {
                if state == from {
                    successors.push(to);
                }
            }
            (RegisterInput::Cas { from, .. }, Some(&RegisterOutput::Cas(false))) => {
                if state != from {
                    successors.push(state);
                }
            }
            (RegisterInput::Cas { from, to }, _) => {
                successors.push(if state == from { to } else { state });
            }
        }
    }

    fn describe_state(&self, state: u32) -> Value {
        self.values.value(state).clone()
    }
}

/// Interns strings; a concatenation is stored as a pair of ids, not as bytes.
///
/// Why: the search creates a new string for nearly every step on a kv history (each append in
/// each order), and copying whole strings dominated. Here a string is either a *leaf* (bytes
/// from the history: initial value, pieces put or appended, strings read) or a *concat* node
/// (two ids). Each string also has a polynomial rolling hash (`hash(a + b) = hash(a) *
/// BASE^len(b) + hash(b)`, wrapping), so the hash of a concatenation comes from its parts.
///
/// Invariants: one id per distinct content (equal contents, equal ids; hashes only pick
/// candidates and equality is always decided on contents); id 0 is `""`.
#[derive(Debug)]
struct StringTable {
    /// Bytes of all leaves, back to back.
    leaf_bytes: Vec<u8>,
    /// Rolling hashes of every prefix of some leaves, back to back: they answer "is string s a
    /// prefix of leaf t" in O(1) for the kv lookahead. Computed on first use of a leaf as `t`
    /// (most strings read are never needed: storing them all cost 8 bytes per byte read).
    leaf_prefix_hashes: Vec<u64>,
    /// id -> where its prefix hashes start in `leaf_prefix_hashes`, or `NO_PREFIX_HASHES`.
    prefix_hashes_start: Vec<usize>,
    nodes: Vec<StringNode>,
    lengths: Vec<usize>,
    hashes: Vec<u64>,
    /// BASE^length, to append a string to another's hash.
    powers: Vec<u64>,
    /// rolling hash -> first id with it; `same_hash_next` chains the others.
    first_by_hash: HashMap<u64, u32, FxBuildHasher>,
    same_hash_next: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StringNode {
    /// `leaf_bytes[start..start + length]`.
    Leaf { start: usize },
    /// The content of `head` followed by that of `tail`.
    Concat { head: u32, tail: u32 },
}

const ROLLING_BASE: u64 = 0x100_0000_01b3; // the FNV prime: odd, with well-spread bits
const NO_STRING: u32 = u32::MAX;
const NO_PREFIX_HASHES: usize = usize::MAX;

impl Default for StringTable {
    fn default() -> Self {
        let mut table = StringTable {
            leaf_bytes: Vec::new(),
            leaf_prefix_hashes: Vec::new(),
            prefix_hashes_start: Vec::new(),
            nodes: Vec::new(),
            lengths: Vec::new(),
            hashes: Vec::new(),
            powers: Vec::new(),
            first_by_hash: HashMap::default(),
            same_hash_next: Vec::new(),
        };
        assert_eq!(table.intern(""), 0);
        table
    }
}

impl StringTable {
    fn len(&self, id: u32) -> usize {
        self.lengths[id as usize]
    }

    /// Appends the content of `id` to `out` (iteratively: concat chains are deep).
    fn flatten_into(&self, id: u32, out: &mut Vec<u8>) {
        let mut pending = vec![id];
        while let Some(id) = pending.pop() {
            match self.nodes[id as usize] {
                StringNode::Leaf { start } => {
                    out.extend_from_slice(&self.leaf_bytes[start..start + self.len(id)]);
                }
                StringNode::Concat { head, tail } => {
                    pending.push(tail);
                    pending.push(head);
                }
            }
        }
    }

    fn content(&self, id: u32) -> String {
        let mut bytes = Vec::with_capacity(self.len(id));
        self.flatten_into(id, &mut bytes);
        String::from_utf8(bytes).expect("only UTF-8 strings and their concatenations")
    }

    fn same_content(&self, left: u32, right: &[u8]) -> bool {
        if self.len(left) != right.len() {
            return false;
        }
        if let StringNode::Leaf { start } = self.nodes[left as usize] {
            return self.leaf_bytes[start..start + right.len()] == *right;
        }
        let mut bytes = Vec::with_capacity(right.len());
        self.flatten_into(left, &mut bytes);
        bytes == right
    }

    /// False only if `prefix` is certainly not a prefix of `whole`: equal hashes are taken as
    /// "maybe", which makes the answer safe for pruning without comparing bytes.
    fn may_be_prefix(&mut self, prefix: u32, whole: u32) -> bool {
        let (prefix_length, whole_length) = (self.len(prefix), self.len(whole));
        if prefix_length > whole_length {
            return false;
        }
        if prefix_length == 0 {
            return true;
        }
        match self.nodes[whole as usize] {
            StringNode::Leaf { start } => {
                let mut hashes_start = self.prefix_hashes_start[whole as usize];
                if hashes_start == NO_PREFIX_HASHES {
                    hashes_start = self.leaf_prefix_hashes.len();
                    let mut prefix_hash = 0u64;
                    for &byte in &self.leaf_bytes[start..start + whole_length] {
                        prefix_hash =
                            prefix_hash.wrapping_mul(ROLLING_BASE).wrapping_add(u64::from(byte));
                        self.leaf_prefix_hashes.push(prefix_hash);
                    }
                    self.prefix_hashes_start[whole as usize] = hashes_start;
                }
                self.leaf_prefix_hashes[hashes_start + prefix_length - 1]
                    == self.hashes[prefix as usize]
            }
            // Not reached by the kv lookahead (strings read are interned as leaves before any
            // concat exists); answering "maybe" is always safe.
            StringNode::Concat { .. } => true,
        }
    }

    fn find(&self, hash: u64, mut equal: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut id = self.first_by_hash.get(&hash).copied().unwrap_or(NO_STRING);
        while id != NO_STRING {
            if equal(id) {
                return Some(id);
            }
            id = self.same_hash_next[id as usize];
        }
        None
    }

    fn add(&mut self, node: StringNode, length: usize, hash: u64, power: u64) -> u32 {
        let id = u32::try_from(self.nodes.len()).expect("fewer than 2^32 distinct strings");
        assert!(id != NO_STRING);
        self.nodes.push(node);
        self.prefix_hashes_start.push(NO_PREFIX_HASHES);
        self.lengths.push(length);
        self.hashes.push(hash);
        self.powers.push(power);
        let previous = self.first_by_hash.insert(hash, id).unwrap_or(NO_STRING);
        self.same_hash_next.push(previous);
        id
    }

    fn intern(&mut self, text: &str) -> u32 {
        let (hash, power) = text.bytes().fold((0u64, 1u64), |(hash, power), byte| {
            (
                hash.wrapping_mul(ROLLING_BASE).wrapping_add(u64::from(byte)),
                power.wrapping_mul(ROLLING_BASE),
            )
        });
        if let Some(id) = self.find(hash, |candidate| self.same_content(candidate, text.as_bytes()))
        {
            return id;
        }
        let start = self.leaf_bytes.len();
        self.leaf_bytes.extend_from_slice(text.as_bytes());
        self.add(StringNode::Leaf { start }, text.len(), hash, power)
    }

    /// The id of the concatenation of two strings.
    fn concat(&mut self, head: u32, tail: u32) -> u32 {
        if self.len(tail) == 0 {
            return head;
        }
        if self.len(head) == 0 {
            return tail;
        }
        let hash = self.hashes[head as usize]
            .wrapping_mul(self.powers[tail as usize])
            .wrapping_add(self.hashes[tail as usize]);
        let power = self.powers[head as usize].wrapping_mul(self.powers[tail as usize]);
        let length = self.len(head) + self.len(tail);
        let mut wanted: Option<Vec<u8>> = None;
        let found = self.find(hash, |candidate| {
            if self.nodes[candidate as usize] == (StringNode::Concat { head, tail }) {
                return true;
            }
            if self.len(candidate) != length {
                return false;
            }
            // Same hash and length, built another way: compare contents (rare).
            let wanted = wanted.get_or_insert_with(|| {
                let mut bytes = Vec::with_capacity(length);
                self.flatten_into(head, &mut bytes);
                self.flatten_into(tail, &mut bytes);
                bytes
            });
            self.same_content(candidate, wanted)
        });
        match found {
            Some(id) => id,
            None => self.add(StringNode::Concat { head, tail }, length, hash, power),
        }
    }
}

/// A key-value store of strings with `get`, `put` and `append` (`kv`). Every key is an
/// independent object, so the checker splits the history by key; the state of one key is its
/// interned string.
#[derive(Debug, Default)]
pub struct KvModel {
    strings: StringTable,
}

/// A kv call's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvInput {
    /// Read the whole string.
    Get,
    /// Replace the string.
    Put(u32),
    /// Append to the string.
    Append(u32),
}

/// A kv call's observed result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// The string read.
    Got(u32),
    /// A put or append happened.
    Done,
}

impl KvModel {
    /// An empty model.
    pub fn new() -> Self {
        KvModel::default()
    }

    /// The text of an interned string.
    pub(crate) fn text(&self, id: u32) -> String {
        self.strings.content(id)
    }

    fn string_id(&mut self, value: &Value, what: &str) -> Result<u32, String> {
        match value {
            Value::String(text) => Ok(self.strings.intern(text)),
            // A key never written reads as "".
            Value::Null => Ok(0),
            _ => Err(format!("{what} must be a string, found {value}")),
        }
    }
}

impl Model for KvModel {
    type State = u32;
    type Input = KvInput;
    type Output = KvOutput;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["get", "put", "append"]
    }

    fn init(&mut self, init: &Value) -> Result<u32, String> {
        self.string_id(init, "kv init")
    }

    fn decode_input(&mut self, f: &str, value: &Value) -> Result<KvInput, String> {
        match f {
            "get" => Ok(KvInput::Get),
            "put" => Ok(KvInput::Put(self.string_id(value, "the string put")?)),
            "append" => Ok(KvInput::Append(self.string_id(value, "the string appended")?)),
            _ => Err(format!("unknown f {f:?}")),
        }
    }

    fn decode_output(&mut self, input: &KvInput, value: &Value) -> Result<KvOutput, String> {
        match input {
            KvInput::Get => Ok(KvOutput::Got(self.string_id(value, "the string got")?)),
            KvInput::Put(_) | KvInput::Append(_) => {
                if value.is_null() {
                    Ok(KvOutput::Done)
                } else {
                    Err(format!("put and append return null, found {value}"))
                }
            }
        }
    }

    fn partition<'k>(&self, key: Option<&'k str>) -> Result<Option<&'k str>, String> {
        match key {
            Some(key) => Ok(Some(key)),
            None => Err("kv operations need a key".to_string()),
        }
    }

    fn is_read_only(&self, input: &KvInput, _output: Option<&KvOutput>) -> bool {
        match input {
            KvInput::Get => true,
            // Appending "" changes nothing.
            KvInput::Append(piece) => *piece == 0,
            KvInput::Put(_) => false,
        }
    }

    fn can_reach<'a>(
        &mut self,
        state: u32,
        _observer: &KvInput,
        observed: &KvOutput,
        others: impl Iterator<Item = &'a KvInput>,
    ) -> bool {
        let KvOutput::Got(target) = *observed else {
            return true;
        };
        if state == target {
            return true;
        }
        let mut appended_bytes_max = 0;
        for input in others {
            match *input {
                // A put can reset the string to anything: no conclusion.
                KvInput::Put(_) => return true,
                KvInput::Append(piece) => appended_bytes_max += self.strings.len(piece),
                KvInput::Get => {}
            }
        }
        // Appends only: the string can only grow, by at most what is pending.
        self.strings.len(target) <= self.strings.len(state) + appended_bytes_max
            && self.strings.may_be_prefix(state, target)
    }

    fn step(
        &mut self,
        state: u32,
        input: &KvInput,
        output: Option<&KvOutput>,
        successors: &mut Vec<u32>,
    ) {
        match (*input, output) {
            (KvInput::Get, Some(&KvOutput::Got(got))) => {
                if got == state {
                    successors.push(state);
                }
            }
            (KvInput::Get, _) => successors.push(state),
            (KvInput::Put(text), _) => successors.push(text),
            (KvInput::Append(piece), _) => {
                let next = self.strings.concat(state, piece);
                successors.push(next);
            }
        }
    }

    fn describe_state(&self, state: u32) -> Value {
        Value::String(self.strings.content(state))
    }
}

/// A FIFO queue (`fifo-queue`): `enqueue(x)` returns null; `dequeue` returns the head, or
/// null if the queue is empty. The state is the interned sequence of interned elements.
#[derive(Debug)]
pub struct FifoQueueModel {
    elements: ValueInterner,
    queues: Vec<Vec<u32>>,
    queue_id_by_contents: HashMap<Vec<u32>, u32, FxBuildHasher>,
    /// (queue id, element id) -> id of the queue with the element at the back.
    enqueued: HashMap<(u32, u32), u32, FxBuildHasher>,
    /// queue id -> (head element, id of the rest); only for non-empty queues.
    dequeued: HashMap<u32, (u32, u32), FxBuildHasher>,
}

/// A queue call's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueInput {
    /// Put this element at the back.
    Enqueue(u32),
    /// Take the element at the front.
    Dequeue,
}

/// A queue call's observed result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueOutput {
    /// The enqueue happened.
    Enqueued,
    /// The element taken, `None` if the queue was empty.
    Dequeued(Option<u32>),
}

impl Default for FifoQueueModel {
    fn default() -> Self {
        let mut model = FifoQueueModel {
            elements: ValueInterner::default(),
            queues: Vec::new(),
            queue_id_by_contents: HashMap::default(),
            enqueued: HashMap::default(),
            dequeued: HashMap::default(),
        };
        assert_eq!(model.queue_id(Vec::new()), FifoQueueModel::EMPTY);
        model
    }
}

impl FifoQueueModel {
    /// The id of the empty queue.
    pub const EMPTY: u32 = 0;

    /// An empty model.
    pub fn new() -> Self {
        FifoQueueModel::default()
    }

    fn queue_id(&mut self, contents: Vec<u32>) -> u32 {
        if let Some(&id) = self.queue_id_by_contents.get(&contents) {
            return id;
        }
        let id = u32::try_from(self.queues.len()).expect("fewer than 2^32 distinct queues");
        self.queues.push(contents.clone());
        self.queue_id_by_contents.insert(contents, id);
        id
    }

    fn element_id(&mut self, value: &Value) -> Result<u32, String> {
        if value.is_null() {
            // A dequeue of null means "empty": a null element would be ambiguous.
            return Err("null cannot be enqueued (a dequeue of null means empty)".to_string());
        }
        Ok(self.elements.intern(value))
    }

    /// (head, rest) of a non-empty queue.
    fn pop(&mut self, queue: u32) -> (u32, u32) {
        if let Some(&popped) = self.dequeued.get(&queue) {
            return popped;
        }
        let contents = &self.queues[queue as usize];
        assert!(!contents.is_empty(), "pop is only called on a non-empty queue");
        let head = contents[0];
        let rest = contents[1..].to_vec();
        let rest_id = self.queue_id(rest);
        self.dequeued.insert(queue, (head, rest_id));
        (head, rest_id)
    }
}

impl Model for FifoQueueModel {
    type State = u32;
    type Input = QueueInput;
    type Output = QueueOutput;

    fn name(&self) -> &'static str {
        "fifo-queue"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["enqueue", "dequeue"]
    }

    fn init(&mut self, init: &Value) -> Result<u32, String> {
        match init {
            Value::Null => Ok(FifoQueueModel::EMPTY),
            Value::Array(items) => {
                let contents =
                    items.iter().map(|item| self.element_id(item)).collect::<Result<_, _>>()?;
                Ok(self.queue_id(contents))
            }
            _ => Err(format!("a queue's init is null or an array, found {init}")),
        }
    }

    fn decode_input(&mut self, f: &str, value: &Value) -> Result<QueueInput, String> {
        match f {
            "enqueue" => Ok(QueueInput::Enqueue(self.element_id(value)?)),
            "dequeue" => Ok(QueueInput::Dequeue),
            _ => Err(format!("unknown f {f:?}")),
        }
    }

    fn decode_output(&mut self, input: &QueueInput, value: &Value) -> Result<QueueOutput, String> {
        match input {
            QueueInput::Enqueue(_) => {
                if value.is_null() {
                    Ok(QueueOutput::Enqueued)
                } else {
                    Err(format!("an enqueue returns null, found {value}"))
                }
            }
            QueueInput::Dequeue => Ok(QueueOutput::Dequeued(if value.is_null() {
                None
            } else {
                Some(self.elements.intern(value))
            })),
        }
    }

    fn is_read_only(&self, input: &QueueInput, output: Option<&QueueOutput>) -> bool {
        matches!((input, output), (QueueInput::Dequeue, Some(QueueOutput::Dequeued(None))))
    }

    fn can_reach<'a>(
        &mut self,
        state: u32,
        _observer: &QueueInput,
        observed: &QueueOutput,
        others: impl Iterator<Item = &'a QueueInput>,
    ) -> bool {
        // The only read-only observation is "empty": enough dequeues must be pending.
        if *observed != QueueOutput::Dequeued(None) {
            return true;
        }
        let length = self.queues[state as usize].len();
        length == 0 || others.filter(|input| **input == QueueInput::Dequeue).count() >= length
    }

    fn step(
        &mut self,
        state: u32,
        input: &QueueInput,
        output: Option<&QueueOutput>,
        successors: &mut Vec<u32>,
    ) {
        match (*input, output) {
            (QueueInput::Enqueue(element), _) => {
                let next = match self.enqueued.get(&(state, element)) {
                    Some(&next) => next,
                    None => {
                        let mut contents = self.queues[state as usize].clone();
                        contents.push(element);
                        let next = self.queue_id(contents);
                        self.enqueued.insert((state, element), next);
                        next
                    }
                };
                successors.push(next);
            }
            (QueueInput::Dequeue, observed) => {
                let taken =
                    if state == FifoQueueModel::EMPTY { None } else { Some(self.pop(state)) };
                match (taken, observed) {
                    (None, Some(QueueOutput::Dequeued(None)) | None) => successors.push(state),
                    (Some((_, rest)), None) => successors.push(rest),
                    (Some((head, rest)), Some(&QueueOutput::Dequeued(Some(element))))
                        if head == element =>
                    {
                        successors.push(rest)
                    }
                    _ => {}
                }
            }
        }
    }

    fn describe_state(&self, state: u32) -> Value {
        let contents = &self.queues[state as usize];
        Value::Array(contents.iter().map(|&id| self.elements.value(id).clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn successors<M: Model>(
        model: &mut M,
        state: M::State,
        input: &M::Input,
        output: Option<&M::Output>,
    ) -> Vec<M::State> {
        let mut next = Vec::new();
        model.step(state, input, output, &mut next);
        next
    }

    #[test]
    fn cas_register_steps() {
        let mut model = RegisterModel::cas_register();
        let empty = model.init(&Value::Null).unwrap();
        let cas = model.decode_input("cas", &json!([1, 2])).unwrap();
        let swapped = model.decode_output(&cas, &json!(true)).unwrap();
        let not_swapped = model.decode_output(&cas, &json!(false)).unwrap();
        assert!(successors(&mut model, empty, &cas, Some(&swapped)).is_empty());
        assert_eq!(successors(&mut model, empty, &cas, Some(&not_swapped)), vec![empty]);
        let one = model.values.intern(&json!(1));
        let two = model.values.intern(&json!(2));
        assert_eq!(successors(&mut model, one, &cas, Some(&swapped)), vec![two]);
        assert_eq!(successors(&mut model, one, &cas, None), vec![two]);
        assert!(model.decode_input("cas", &json!([1])).is_err());
        assert!(model.decode_output(&cas, &json!(1)).is_err());
        assert!(model.is_read_only(&cas, Some(&not_swapped)));
        assert!(!model.is_read_only(&cas, Some(&swapped)));
    }

    #[test]
    fn kv_appends_are_interned() {
        let mut model = KvModel::new();
        let empty = model.init(&json!("")).unwrap();
        let append_a = model.decode_input("append", &json!("a")).unwrap();
        let got_aa = model.decode_output(&KvInput::Get, &json!("aa")).unwrap();
        let a = successors(&mut model, empty, &append_a, None)[0];
        let aa = successors(&mut model, a, &append_a, None)[0];
        assert_eq!(KvOutput::Got(aa), got_aa, "the same string interns to the same id");
        assert_eq!(model.describe_state(aa), json!("aa"));
        assert!(model.partition(None).is_err());
        assert!(model.decode_input("put", &json!(3)).is_err());
    }

    #[test]
    fn string_table_concatenations_are_canonical() {
        let mut table = StringTable::default();
        let abc_leaf = table.intern("abc");
        let (a, bc, ab, c) =
            (table.intern("a"), table.intern("bc"), table.intern("ab"), table.intern("c"));
        assert_eq!(table.concat(a, bc), abc_leaf, "equal contents, equal ids");
        assert_eq!(table.concat(ab, c), abc_leaf);
        assert!(table.may_be_prefix(ab, abc_leaf) && table.may_be_prefix(a, abc_leaf));
        assert!(!table.may_be_prefix(bc, abc_leaf) && !table.may_be_prefix(abc_leaf, ab));
        let cab = table.concat(c, ab);
        let (ca, b) = (table.concat(c, a), table.intern("b"));
        assert_eq!(table.concat(ca, b), cab);
        assert_eq!(table.intern("cab"), cab, "a leaf interned after an equal concat");
        assert_eq!(table.content(cab), "cab");
        assert_eq!(table.concat(0, a), a, "\"\" + a = a");
        assert_ne!(table.concat(a, a), a);
    }

    #[test]
    fn fifo_queue_steps() {
        let mut model = FifoQueueModel::new();
        let empty = model.init(&Value::Null).unwrap();
        let enqueue_1 = model.decode_input("enqueue", &json!(1)).unwrap();
        let enqueue_2 = model.decode_input("enqueue", &json!(2)).unwrap();
        let q1 = successors(&mut model, empty, &enqueue_1, None)[0];
        let q12 = successors(&mut model, q1, &enqueue_2, None)[0];
        assert_eq!(model.describe_state(q12), json!([1, 2]));
        let got_2 = model.decode_output(&QueueInput::Dequeue, &json!(2)).unwrap();
        let got_1 = model.decode_output(&QueueInput::Dequeue, &json!(1)).unwrap();
        let got_none = model.decode_output(&QueueInput::Dequeue, &Value::Null).unwrap();
        assert!(successors(&mut model, q12, &QueueInput::Dequeue, Some(&got_2)).is_empty());
        let q2 = successors(&mut model, q12, &QueueInput::Dequeue, Some(&got_1))[0];
        assert_eq!(model.describe_state(q2), json!([2]));
        assert_eq!(
            successors(&mut model, empty, &QueueInput::Dequeue, Some(&got_none)),
            vec![empty]
        );
        assert!(successors(&mut model, q2, &QueueInput::Dequeue, Some(&got_none)).is_empty());
        assert!(model.decode_input("enqueue", &Value::Null).is_err());
        assert_eq!(model.init(&json!([1, 2])).unwrap(), q12);
    }
}
