"""The SSH door: authentication, target selection, upstream relay, recording and SFTP logging."""
