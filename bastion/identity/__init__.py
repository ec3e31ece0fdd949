"""Who people are and how they prove it: users, passwords, TOTP, sealed secrets."""
