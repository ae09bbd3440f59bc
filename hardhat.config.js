// Hardhat 3 configuration for fedledger.
//
// The compiler is the npm `solc` package's soljson.js (WASM), named by `path`: Hardhat then never
// tries to download a compiler (native solc downloads are not reachable here). The settings below
// are mirrored by fedledger/chain/compiler.py, and a test checks both produce the same bytecode.
import { createRequire } from "node:module";
import { defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);

export const SOLC_VERSION = "0.8.37";
export const SOLC_SETTINGS = {
  // solc 0.8.37 defaults to osaka; Anvil and Hardhat's node run prague.
  evmVersion: "prague",
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: "ipfs" },
};

export default defineConfig({
  solidity: {
    version: SOLC_VERSION,
    path: require.resolve("solc/soljson.js"),
    settings: SOLC_SETTINGS,
  },
  // Solidity tests are the Foundry-style *.t.sol files under contracts/ (Hardhat treats them as tests).
  paths: { sources: "./contracts" },
  test: {
    solidity: {
      fuzz: { runs: 256, seed: "0x5eed" },
    },
  },
  networks: {
    // `npx hardhat node` serves this network; fedledger's LocalChain launches it with a free port.
    default: {
      type: "edr-simulated",
      chainType: "l1",
      hardfork: "prague",
    },
  },
});
