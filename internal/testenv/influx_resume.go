package testenv

import "fmt"

// Resume starts a server stopped by Kill or Close again, as Start does,
// for servers from StartInflux, which have no test to report on.
func (s *InfluxServer) Resume() error {
	if err := s.start(); err != nil {
		return fmt.Errorf("testenv: restart influxd: %w\n%s", err, LogTail(s.logPath()))
	}
	return nil
}
