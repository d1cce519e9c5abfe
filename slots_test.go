package stampede

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// slot agrees with what a real Cluster says: CLUSTER KEYSLOT.
func TestSlotMatchesCluster(t *testing.T) {
	rdb := cluster(t).client(t)
	for _, key := range []string{"", "a", "foo", "ns:{k}", "ns:{k}:lock", "{}x", "x{}", "a{b}c{d}", "ns:{a}b}", "123456789"} {
		want, err := rdb.ClusterKeySlot(context.Background(), key).Result()
		require.NoError(t, err)
		require.EqualValues(t, want, slot(key), "slot(%q)", key)
	}
	require.Equal(t, uint16(0x31C3), crc16("123456789"), "CRC-16/XMODEM check value")
}
