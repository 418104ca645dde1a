package main

import (
	"fmt"

	"github.com/cleanprod/cleanprod/shard"
)

// shardSet is this replica's shard: shard.index, or the ordinal of the
// host name with shard.index_from_hostname.
func shardSet(cfg *Config, hostname func() (string, error)) (shard.Set, error) {
	index := cfg.Shard.Index
	if cfg.Shard.FromHostname {
		h, err := hostname()
		if err != nil {
			return shard.Set{}, fmt.Errorf("shard.index_from_hostname: %w", err)
		}
		if index, err = shard.OrdinalOf(h); err != nil {
			return shard.Set{}, fmt.Errorf("shard.index_from_hostname: %w", err)
		}
	}
	set, err := shard.New(index, cfg.Shard.Count)
	if err != nil {
		return shard.Set{}, fmt.Errorf("shard: %w", err)
	}
	return set, nil
}
