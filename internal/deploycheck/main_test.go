package deploycheck

import (
	"testing"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
