"""The distributed side of a run: where this process sits in its job, where its shard goes, who it is."""
