// Copies each 128-sample block of the microphone (channel 0) to the page (docs/WEB.md).
class TribeCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("tribe-capture", TribeCapture);
