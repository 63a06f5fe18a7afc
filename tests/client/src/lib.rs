//! Test harness: a scratch PostgreSQL cluster on a private port and socket directory.
