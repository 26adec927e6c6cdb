"""Ember+ (S101, EmBER, Glow): a driver, an emulator and their sans-I/O codec (issue 16,
under way: the S101 framing first)."""
