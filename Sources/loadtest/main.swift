import ArgumentParser
struct Main: ParsableCommand { static let configuration = CommandConfiguration(commandName: "loadtest") }
Main.main()
