import ArgumentParser
struct Main: ParsableCommand { static let configuration = CommandConfiguration(commandName: "maskshop") }
Main.main()
