//! The supervisor: runs the child, forwards signals, reaps zombies.
