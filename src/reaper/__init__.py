"""The reaper: closes the loops the happy path leaves open (DESIGN-BRIEF.md, flow step 7)."""
