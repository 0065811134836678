//! The ISO 7816 transport around opcard: what a card's operating system
//! does before the application sees a command. Chained commands (CLA bit
//! 0x10) are collected into one; a response longer than the command's Le is
//! handed out in pieces, the rest announced as `61xx` and fetched with
//! GET RESPONSE.

use iso7816::command::FromSliceError;
use iso7816::{Command, Instruction, Status};

/// The largest command (after chaining) and response we handle; opcard's
/// own buffers are of this size.
const MAX_APDU: usize = 7609;

pub struct VirtualCard<C: opcard::Client> {
    card: opcard::Card<C>,
    /// A chained command still being received.
    chained: Option<Command<MAX_APDU>>,
    /// The part of the last response not yet fetched.
    pending: Vec<u8>,
}

impl<C: opcard::Client> VirtualCard<C> {
    pub fn new(card: opcard::Card<C>) -> Self {
        Self {
            card,
            chained: None,
            pending: Vec::new(),
        }
    }

    fn process(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Status> {
        let command = Command::<MAX_APDU>::try_from(apdu).map_err(|e| match e {
            FromSliceError::InvalidClass => Status::ClassNotSupported,
            FromSliceError::InvalidFirstBodyByteForExtended => Status::UnspecifiedCheckingError,
            FromSliceError::TooShort
            | FromSliceError::TooLong
            | FromSliceError::InvalidSliceLength => Status::WrongLength,
        })?;

        if command.instruction() == Instruction::GetResponse && self.chained.is_none() {
            return Ok(self.take(command.expected()));
        }
        self.pending.clear();

        let command = match self.chained.take() {
            Some(mut first) => {
                first
                    .extend_from_command(&command)
                    .map_err(|_| Status::WrongLength)?;
                first
            }
            None => command,
        };
        if !command.class().chain().last_or_only() {
            self.chained = Some(command);
            return Ok(Vec::new());
        }

        let mut reply = heapless::Vec::<u8, MAX_APDU>::new();
        self.card.handle(command.as_view(), reply.as_mut_view())?;
        self.pending = reply.to_vec();
        Ok(self.take(command.expected()))
    }

    /// Up to `le` bytes of the pending response, with the status word saying
    /// whether more is left.
    fn take(&mut self, le: usize) -> Vec<u8> {
        let n = le.min(self.pending.len());
        let mut out: Vec<u8> = self.pending.drain(..n).collect();
        let status = match self.pending.len() {
            0 => Status::Success,
            rest => Status::MoreAvailable(u8::try_from(rest).unwrap_or(0)),
        };
        out.extend_from_slice(&<[u8; 2]>::from(status));
        out
    }
}

impl<C: opcard::Client> vpicc::VSmartCard for VirtualCard<C> {
    fn power_off(&mut self) {
        self.chained = None;
        self.pending.clear();
        self.card.reset();
    }

    fn reset(&mut self) {
        self.power_off();
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        match self.process(apdu) {
            Ok(response) => response,
            Err(status) => {
                self.chained = None;
                self.pending.clear();
                <[u8; 2]>::from(status).to_vec()
            }
        }
    }
}
