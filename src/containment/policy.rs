//! Containment policies: which changes the configured policies ask for in answer to the alerts a detection pass fired.
