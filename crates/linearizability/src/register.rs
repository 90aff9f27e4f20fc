//! A single integer register, the textbook model (and porcupine's first example).

use crate::model::Model;

/// An operation on the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    Write(u64),
    Read,
    /// Set to `new` if the register holds `expected`.
    Cas {
        expected: u64,
        new: u64,
    },
}

/// The register's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    Written,
    Read(u64),
    /// Whether the compare held (and the write happened).
    Cas(bool),
}

/// A register holding a `u64`, initially 0. Not partitioned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Register {
    fn apply(state: u64, input: RegisterInput) -> (RegisterOutput, u64) {
        match input {
            RegisterInput::Write(value) => (RegisterOutput::Written, value),
            RegisterInput::Read => (RegisterOutput::Read(state), state),
            RegisterInput::Cas { expected, new } if state == expected => {
                (RegisterOutput::Cas(true), new)
            }
            RegisterInput::Cas { .. } => (RegisterOutput::Cas(false), state),
        }
    }
}

impl Model for Register {
    type State = u64;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, state: &u64, input: &RegisterInput, output: &RegisterOutput) -> Option<u64> {
        let (expected, next) = Self::apply(*state, *input);
        (expected == *output).then_some(next)
    }

    fn step_unobserved(&self, state: &u64, input: &RegisterInput) -> u64 {
        Self::apply(*state, *input).1
    }

    fn is_read_only(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> bool {
        matches!(
            (input, output),
            (RegisterInput::Read, _)
                | (RegisterInput::Cas { .. }, Some(RegisterOutput::Cas(false)))
        )
    }
}
