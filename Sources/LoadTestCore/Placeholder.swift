// LoadTestCore
