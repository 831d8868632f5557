import ArgumentParser
struct Main: ParsableCommand { static let configuration = CommandConfiguration(commandName: "gateway") }
Main.main()
